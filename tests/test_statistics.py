"""The committee's statistics: every figure against a hand count, on cases made through the
case service at chosen times (Decree 09 boundaries included), the workbook read back, the
chart opened, and who may read which area's figures."""

from __future__ import annotations

import asyncio
import io
import json
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy import delete, func, insert, select, update

from bot.app import App
from bot.cli import main
from bot.cli.keys import KEY_SETTINGS
from bot.core.clock import FakeClock
from bot.core.i18n import Translator
from bot.core.settings import Settings
from bot.services import outreach, periods, report_files, stat_reports, statistics
from bot.services.cases import Actor, CaseService, Draft, Refused
from bot.services.directory import normalise_phone
from bot.services.people import erase
from schedules.escalation import escalate_due
from storage import db
from storage.models import (
    Account,
    Area,
    AuditEvent,
    Incident,
    Outbox,
    OutboxStatus,
    Person,
    Priority,
    ReachCount,
    ReachYear,
    Role,
    RoleAssignment,
    School,
    StatReport,
)
from tests.auxil.people import (
    ADMIN_PHONE,
    CHIEF_QH,
    LIAISON_HX,
    LIAISON_PL,
    OFFICER_BT,
    OFFICER_HX,
    PARENT_HX,
    PHONES,
    Chat,
    add_province_admin,
    link_everyone,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local(text: str) -> datetime:
    """'2026-09-14 23:30' in Vietnam, as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=TZ).astimezone(UTC)


# ---- periods: the decree's cut-off -------------------------------------------------------------

def test_decree_09_periods_run_from_the_15th_to_the_14th() -> None:
    q3 = periods.quarter(2026, 3)
    assert (q3.first, q3.last) == (date(2026, 6, 15), date(2026, 9, 14))
    assert periods.parse("2026-Q1").first == date(2025, 12, 15)
    assert periods.parse("2026-H1").last == date(2026, 6, 14)
    year = periods.parse("2026")
    assert (year.first, year.last) == (date(2025, 12, 15), date(2026, 12, 14))
    assert periods.parse("2026-11").first == date(2026, 10, 15)
    # The 14th and the 15th of September land in different quarters.
    assert periods.containing("quarter", date(2026, 9, 14)).label == "2026-Q3"
    assert periods.containing("quarter", date(2026, 9, 15)).label == "2026-Q4"
    # 16 December 2026 already belongs to the reporting year 2027.
    assert periods.containing("quarter", date(2026, 12, 16)).label == "2027-Q1"
    assert periods.containing("year", date(2026, 12, 16)).label == "2027"
    assert periods.previous(periods.quarter(2027, 1)).label == "2026-Q4"


def test_cutoff_day_1_gives_calendar_periods() -> None:
    q3 = periods.quarter(2026, 3, cutoff_day=1)
    assert (q3.first, q3.last) == (date(2026, 7, 1), date(2026, 9, 30))
    assert periods.parse("2026", cutoff_day=1).first == date(2026, 1, 1)
    assert periods.containing("quarter", date(2026, 12, 16), cutoff_day=1).label == "2026-Q4"
    start, end = q3.bounds(TZ)
    assert start == local("2026-07-01 00:00") and end == local("2026-10-01 00:00")


@pytest.mark.parametrize("spec", ["2026-Q5", "26-Q1", "2026-13", "Q3", "2026-H3", ""])
def test_a_period_that_cannot_be_read_says_what_to_write(spec: str) -> None:
    with pytest.raises(periods.PeriodError, match="2026"):
        periods.parse(spec)


# ---- the figures -------------------------------------------------------------------------------

async def _person(session, who: int | str) -> Person:
    if who == PARENT_HX:
        return (await session.execute(select(Person).join(RoleAssignment).where(
            RoleAssignment.role == Role.PARENT))).scalars().first()
    phone = PHONES[who] if isinstance(who, int) else who
    return (await session.execute(select(Person).where(
        Person.phone == normalise_phone(phone)))).scalar_one()


class Desk:
    """Drives the case service as a person, at a chosen moment, one transaction a call."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions

    async def __call__(self, who: int | str | None, when: datetime, call):
        """who: a chat id or a phone; None is the operator at the command line."""
        async with self.sessions() as session, session.begin():
            service = CaseService(session, now=when, tz=TZ, default_language="vi")
            person = await _person(session, who) if who is not None else None
            return await call(service, Actor(person, "telegram" if person else "cli"))

    async def report(self, who: int, school: str, when: str, category: str, *,
                     urgent: bool = False, anonymous: bool | None = None) -> tuple[int, str]:
        async def create(service: CaseService, actor: Actor) -> tuple[int, str]:
            found = (await service.session.execute(
                select(School).where(School.code == school))).scalar_one()
            incident = await service.create(actor, found, Role.LIAISON, Draft(
                category=category, description="Mô tả sự việc", anonymous=anonymous),
                urgent=urgent)
            return incident.id, incident.ref
        return await self(who, local(when), create)


@pytest.fixture
async def admin(directory, sessions, clock) -> None:
    """Everyone of the test directory with accounts, a parent, and an admin of the province."""
    await link_everyone(sessions, clock)
    await add_province_admin(sessions, clock)


@pytest.fixture
async def scenario(admin, sessions) -> dict[str, str]:
    """Cases across areas, periods and outcomes; returns their references by letter."""
    desk = Desk(sessions)
    refs: dict[str, str] = {}
    # A: Hồi Xuân, Q3; acknowledged in 12 minutes, closed two days later, school confirms.
    a, refs["A"] = await desk.report(LIAISON_HX, "THCS-HX", "2026-07-01 10:00", "bullying")
    await desk(OFFICER_HX, local("2026-07-01 10:12"), lambda s, x: s.acknowledge(x, a))
    await desk(OFFICER_HX, local("2026-07-03 09:00"),
               lambda s, x: s.close(x, a, "handled_by_police"))
    await desk(LIAISON_HX, local("2026-07-04 08:00"), lambda s, x: s.confirm(x, a, True))
    # B: Hồi Xuân, Q3, urgent; acknowledged in 4 minutes, closed, the school disputes it.
    b, refs["B"] = await desk.report(LIAISON_HX, "THCS-HX", "2026-08-10 07:30", "physical",
                                     urgent=True)
    await desk(OFFICER_HX, local("2026-08-10 07:34"), lambda s, x: s.acknowledge(x, b))
    await desk(OFFICER_HX, local("2026-08-11 16:00"),
               lambda s, x: s.close(x, b, "referred_school"))
    await desk(LIAISON_HX, local("2026-08-12 08:00"), lambda s, x: s.confirm(x, b, False))
    # C: Phú Lệ, the last evening of Q3, anonymous, not classified, never acknowledged:
    # the clock escalates it an hour later (in Q4, but it is C's escalation all the same).
    _, refs["C"] = await desk.report(LIAISON_PL, "TH-PL", "2026-09-14 23:30", "other",
                                     anonymous=True)
    settings = Settings(_env_file=None, default_language="vi")  # type: ignore[call-arg]
    await escalate_due(sessions, FakeClock(local("2026-09-15 00:31")), settings)
    # D: Phú Lệ, ten minutes into Q4.
    _, refs["D"] = await desk.report(LIAISON_PL, "TH-PL", "2026-09-15 00:10", "bullying")
    # E: the same quarter a year earlier.
    _, refs["E"] = await desk.report(LIAISON_HX, "THCS-HX", "2025-07-05 09:00", "bullying")
    # F: the last evening of Q2, closed in Q3 (processed in Q3, received in Q2); the school
    # never answers.
    f, refs["F"] = await desk.report(LIAISON_HX, "THCS-HX", "2026-06-14 23:00", "at_risk")
    await desk(OFFICER_HX, local("2026-06-20 10:00"), lambda s, x: s.close(x, f, "unfounded"))
    # G: Q2, never handled: open past its 14-day target all through Q3.
    _, refs["G"] = await desk.report(LIAISON_HX, "THCS-HX", "2026-05-01 10:00",
                                     "family_violence")
    # Awareness messages: the parent and the liaison of THCS-HX reached in Q3 (the liaison
    # twice), one still pending and one sent in Q2 (neither counts).
    async with sessions() as session, session.begin():
        hx = (await session.execute(select(Area.id).where(Area.code == "HX"))).scalar_one()
        for n, (chat, sent_at, status) in enumerate([
                (PARENT_HX, "2026-08-01 09:00", OutboxStatus.SENT),
                (LIAISON_HX, "2026-08-01 09:00", OutboxStatus.SENT),
                (LIAISON_HX, "2026-09-01 09:00", OutboxStatus.SENT),
                (LIAISON_PL, "2026-08-01 09:00", OutboxStatus.PENDING),
                (LIAISON_PL, "2026-06-01 09:00", OutboxStatus.SENT)]):
            account = (await session.execute(select(Account).where(
                Account.external_id == str(chat)))).scalar_one()
            session.add(Outbox(
                idempotency_key=f"campaign-test:{n}", account_id=account.id,
                channel="telegram", chat_id=str(chat), priority=Priority.CAMPAIGN,
                payload={"text": "Tuyên truyền"}, status=status, attempts=1,
                next_attempt_at=local(sent_at), created_at=local(sent_at),
                sent_at=local(sent_at) if status == OutboxStatus.SENT else None,
                campaign_run_id=1, area_id=hx))
    return refs


async def _stats(sessions, who: int | str | None, spec: str, area: str | None = None,
                 now: str = "2026-09-20 12:00"):
    return await Desk(sessions)(who, local(now),
                                lambda s, x: s.statistics(x, periods.parse(spec), area))


async def test_every_figure_of_a_quarter_matches_the_hand_count(sessions, scenario) -> None:
    report = await _stats(sessions, CHIEF_QH, "2026-Q3")
    assert report.area_code == "QH" and report.complete
    assert [r.code for r in report.rows] == ["HX", "PL"]  # QH has no cases of its own
    hx, pl = report.rows
    total = report.total
    # Received: A, B (HX) and C (PL); not D (the 15th), E (a year earlier), F, G (Q2).
    assert (hx.received, pl.received, total.received) == (2, 1, 3)
    assert (total.urgent, total.anonymous) == (1, 1)
    assert total.by_category == {"bullying": 1, "physical": 1, "other": 1}
    assert total.by_school_level == {"THCS": 2, "tiểu học": 1}
    assert total.classified == 2 and report.unclassified == [scenario["C"]]
    # Acknowledged A (12 min) and B (4 min); C escalated beyond the primary officer.
    assert (total.acknowledged, total.escalated, pl.escalated) == (2, 1, 1)
    assert (total.ack_median_minutes, total.ack_p90_minutes) == (4.0, 12.0)
    assert (report.ack_urgent_median_minutes, report.ack_urgent_p90_minutes) == (4.0, 4.0)
    assert (pl.ack_median_minutes, pl.ack_p90_minutes) == (None, None)
    # Processed in Q3: A and F (received in Q2); B was reopened by the school's dispute.
    assert total.closed == 2
    assert total.by_outcome == {"handled_by_police": 1, "unfounded": 1}
    assert total.resolution_rate == 66.7 and total.closed_within_target == 2
    assert (total.confirmed, total.disputed, total.unconfirmed) == (1, 1, 1)
    # Backlog at 14 September's end: E (open since July 2025), G (since 1 May) and B
    # (urgent, 3-day target, reopened by the dispute); oldest first.
    assert total.backlog == 3
    assert [(o.ref, o.area, o.days_open) for o in report.overdue] == [
        (scenario["E"], "Xã Hồi Xuân", 436), (scenario["G"], "Xã Hồi Xuân", 136),
        (scenario["B"], "Xã Hồi Xuân", 35)]
    # A year earlier: E alone.
    assert (hx.year_earlier_received, pl.year_earlier_received) == (1, 0)
    assert report.categories_year_earlier == {"bullying": 1}
    # Outreach: the parent and the liaison of THCS-HX; parents registered there: one.
    assert hx.outreach == {"parent": 1, "liaison": 1} and hx.outreach_people == 2
    assert total.outreach_people == 2 and pl.outreach_people == 0
    assert [(s.code, s.parents) for s in report.schools] == [("THCS-HX", 1), ("TH-PL", 0)]

    data = report.to_json()
    assert data["period"] == {"kind": "quarter", "label": "2026-Q3", "from": "2026-06-15",
                              "to": "2026-09-14", "complete": True,
                              "as_of": "2026-09-15T00:00:00+07:00"}
    assert data["total"]["change_percent"] == 200.0
    assert data["total"]["school_confirmation"] == {"confirmed": 1, "disputed": 1,
                                                    "unanswered_after_7_days": 1}
    bullying = next(c for c in data["categories"] if c["category"] == "bullying")
    assert bullying == {"category": "bullying", "received": 1, "year_earlier": 1,
                        "change_percent": 0.0}


async def test_the_fifteenth_opens_the_next_quarter(sessions, scenario) -> None:
    report = await _stats(sessions, CHIEF_QH, "2026-Q4")
    assert report.total.received == 1 and not report.complete
    assert report.rows[1].code == "PL" and report.rows[1].received == 1  # D alone


async def test_a_province_admin_sees_every_district_as_a_row(sessions, scenario) -> None:
    report = await _stats(sessions, ADMIN_PHONE, "2026-Q3")
    assert [(r.code, r.received) for r in report.rows] == [("BT", 0), ("QH", 3)]
    assert report.total.received == 3
    # …and may look down into a district.
    assert (await _stats(sessions, ADMIN_PHONE, "2026-Q3", "QH")).area_code == "QH"


@pytest.mark.parametrize("who", [PARENT_HX, LIAISON_HX, OFFICER_HX, OFFICER_BT])
async def test_statistics_are_for_admins_and_chiefs(sessions, scenario, who) -> None:
    with pytest.raises(Refused):
        await _stats(sessions, who, "2026-Q3")


async def test_a_chief_sees_only_their_own_subtree(sessions, scenario) -> None:
    with pytest.raises(Refused):
        await _stats(sessions, CHIEF_QH, "2026-Q3", "BT")
    with pytest.raises(Refused):
        await _stats(sessions, CHIEF_QH, "2026-Q3", "TH")
    assert (await _stats(sessions, CHIEF_QH, "2026-Q3", "HX")).rows[0].code == "HX"


# ---- the workbook and the chart ----------------------------------------------------------------

async def test_the_workbook_reads_back_as_an_office_would_file_it(sessions, scenario) -> None:
    report = await _stats(sessions, CHIEF_QH, "2026-Q3")
    t = Translator("vi")
    data = report_files.workbook(t, report, "Ban Chỉ đạo huyện Quan Hóa", TZ)
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Tổng hợp", "Theo địa bàn", "Theo loại vụ việc",
                               "Theo kết quả xử lý", "Tồn đọng", "Tuyên truyền"]
    summary = book["Tổng hợp"]
    assert summary["A1"].value == "Ban Chỉ đạo huyện Quan Hóa"
    assert summary["A2"].value.startswith("BÁO CÁO THỐNG KÊ") and summary["A2"].font.bold
    assert "Quý 3 năm 2026" in summary["A3"].value and "15/06/2026" in summary["A3"].value
    values = {summary.cell(row=r, column=1).value: summary.cell(row=r, column=2)
              for r in range(1, summary.max_row + 1)}
    assert values["Tiếp nhận"].value == 3
    assert values["Tỷ lệ giải quyết"].value == pytest.approx(0.667)
    assert values["Tỷ lệ giải quyết"].number_format == "0.0%"
    areas = book["Theo địa bàn"]
    header = next(r for r in range(1, areas.max_row + 1)
                  if areas.cell(row=r, column=1).value == "Địa bàn")
    assert areas.cell(row=header, column=2).font.bold
    rows = [[c.value for c in row] for row in areas.iter_rows(min_row=header + 1,
                                                               max_row=header + 3)]
    assert [r[:2] for r in rows] == [["Xã Hồi Xuân", 2], ["Xã Phú Lệ", 1], ["Tổng cộng", 3]]
    assert areas.cell(row=header + 3, column=1).font.bold
    assert areas.page_setup.orientation == "landscape" and areas.page_setup.paperSize == 9
    backlog = book["Tồn đọng"]
    refs = [c.value for c in backlog["A"] if c.value in scenario.values()]
    assert refs == [scenario["E"], scenario["G"], scenario["B"]]
    english = load_workbook(io.BytesIO(report_files.workbook(Translator("en"), report, "X", TZ)))
    assert english.sheetnames[0] == "Summary"


async def test_the_chart_is_a_picture_a_phone_can_show(sessions, scenario) -> None:
    report = await _stats(sessions, CHIEF_QH, "2026-Q3")
    image = Image.open(io.BytesIO(report_files.chart(Translator("vi"), report)))
    image.verify()
    assert image.format == "PNG" and image.size[0] >= 800


async def test_the_summary_reads_in_vietnamese_with_vietnamese_numbers(sessions,
                                                                       scenario) -> None:
    report = await _stats(sessions, CHIEF_QH, "2026-Q3")
    text = report_files.summary(Translator("vi"), report, TZ)
    assert "Quý 3 năm 2026 — Huyện Quan Hóa" in text
    assert "tỷ lệ giải quyết 66,7%" in text
    assert "+200,0%" in text
    assert "Mô tả" not in text  # never a description


# ---- in the chat -------------------------------------------------------------------------------

ADMIN_CHAT = 930


async def _admin_on_telegram(sessions, clock) -> None:
    async with sessions() as session, session.begin():
        person = await _person(session, ADMIN_PHONE)
        session.add(Account(channel="telegram", external_id=str(ADMIN_CHAT),
                            person_id=person.id, created_at=clock.now(), code_failures=0))


async def _after_the_scenario(app, clock) -> None:
    """Move the app's clock past the scenario (its messages are dated up to 15 September and
    a chat's messages leave in order), and let them all go out first."""
    clock.advance(local("2026-09-20 12:00") - clock.now())
    await app.worker.settled()


async def test_a_chief_asks_in_telegram_and_gets_summary_chart_and_workbook(
        app, fake_telegram, sessions, clock, scenario) -> None:
    await _after_the_scenario(app, clock)
    chief = Chat(fake_telegram, CHIEF_QH)
    [prompt] = await chief.say("/stats")
    assert "Nghị định 09/2019" in prompt
    assert [label for label, _ in chief.last_buttons()] == [
        "1. Quý này", "2. Quý trước", "3. 6 tháng", "4. Cả năm", "5. Khoảng thời gian khác"]
    [answer] = await chief.tap(chief.button("stats:period:last_quarter"))
    assert "Đang lập báo cáo" in answer
    await app.report_tick()
    summary = await chief.wait_text("📊 Thống kê Quý 3 năm 2026 — Huyện Quan Hóa")
    assert "Tiếp nhận: 3 tin báo" in summary and "Mô tả" not in summary
    await fake_telegram.wait_for(lambda: fake_telegram.sent(CHIEF_QH, "sendDocument"))
    [photo] = fake_telegram.sent(CHIEF_QH, "sendPhoto")
    assert Image.open(io.BytesIO(photo["photo"])).format == "PNG"
    [document] = fake_telegram.sent(CHIEF_QH, "sendDocument")
    assert document["document_filename"] == "bao-cao-thong-ke-2026-Q3.xlsx"
    book = load_workbook(io.BytesIO(document["document"]))
    assert book["Tổng hợp"]["A1"].value == app.settings.committee_name
    async with sessions() as session:  # an export of case references: in the audit log
        sent = (await session.execute(select(AuditEvent.action, AuditEvent.subject).where(
            AuditEvent.person_id.is_not(None)))).all()
    assert sent == [("statistics_sent", "2026-Q3 QH")]


async def test_a_custom_range_is_typed_the_way_offices_write_dates(
        app, fake_telegram, sessions, clock, scenario) -> None:
    await _after_the_scenario(app, clock)
    chief = Chat(fake_telegram, CHIEF_QH)
    await chief.say("/stats")
    [prompt] = await chief.tap(chief.button("stats:period:custom"))
    assert "15/09/2026 - 14/11/2026" in prompt
    [again] = await chief.say("từ tháng 7")
    assert "Chưa đọc được" in again
    [answer] = await chief.say("01/07/2026 - 31/07/2026")
    assert "Đang lập báo cáo" in answer
    await app.report_tick()
    summary = await chief.wait_text("📊 Thống kê Từ 01/07/2026 đến 31/07/2026")
    assert "Tiếp nhận: 1 tin báo" in summary  # A alone


@pytest.mark.parametrize("who", [LIAISON_HX, OFFICER_HX, PARENT_HX])
async def test_stats_in_the_chat_is_refused_politely_to_others(app, fake_telegram, clock,
                                                              scenario, who) -> None:
    await _after_the_scenario(app, clock)
    [answer] = await Chat(fake_telegram, who).say("/stats")
    assert "dành cho quản trị viên Ban Chỉ đạo và lãnh đạo công an" in answer


async def test_zalo_gets_the_chart_by_url_and_a_download_link_that_expires(
        app, fake_zalo, sessions, clock, scenario) -> None:
    async with sessions() as session, session.begin():
        person = await _person(session, CHIEF_QH)
        for account in (await session.execute(select(Account).where(
                Account.person_id == person.id))).scalars():
            account.person_id = None
        session.add(Account(channel="zalo", external_id="z-chief", person_id=person.id,
                            created_at=clock.now(), code_failures=0))
    await _after_the_scenario(app, clock)
    app.settings.public_url = f"http://127.0.0.1:{app.http_port}"
    fake_zalo.user_text("z-chief", "/stats")
    await fake_zalo.wait_for(lambda: any("Quý trước" in t for t in fake_zalo.texts("z-chief")))
    menu = fake_zalo.texts("z-chief")[-1]
    assert "Trả lời bằng số" in menu  # Zalo has no buttons: a numbered menu
    fake_zalo.user_text("z-chief", "2")  # the last quarter
    await fake_zalo.wait_for(lambda: any("Đang lập" in t for t in fake_zalo.texts("z-chief")))
    await app.report_tick()
    await fake_zalo.wait_for(lambda: any("Tải báo cáo" in t for t in fake_zalo.texts("z-chief")))
    [photo] = fake_zalo.sent("z-chief", "sendPhoto")
    text = next(t for t in fake_zalo.texts("z-chief") if "Tải báo cáo" in t)
    link = next(w for w in text.split() if w.startswith("http"))
    async with aiohttp.ClientSession() as http:
        async with http.get(photo["photo"]) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            Image.open(io.BytesIO(await resp.read())).verify()
        async with http.get(link) as resp:
            assert resp.status == 200
            assert load_workbook(io.BytesIO(await resp.read())).sheetnames[0] == "Tổng hợp"
        forged = link.rsplit("/", 2)[0] + "/" + "A" * 24 + "/" + link.rsplit("/", 1)[1]
        async with http.get(forged) as resp:
            assert resp.status == 404
        clock.advance(timedelta(hours=24, minutes=1))
        async with http.get(link) as resp:
            assert resp.status == 404  # the link has expired


async def test_a_closed_period_reaches_the_admins_once_even_across_restarts(
        app, fake_telegram, sessions, clock, admin, settings) -> None:
    await _admin_on_telegram(sessions, clock)
    await app.stop()
    # Q3 closes at midnight between 14 and 15 September (Hanoi); the process was down.
    clock.advance(local("2026-09-15 00:30") - clock.now())
    second = App(settings, clock)
    clock.on_advance(second.worker.wake)
    await second.start()  # the period clock runs at start and catches up
    try:
        chat = Chat(fake_telegram, ADMIN_CHAT)
        await chat.wait_text("📊 Thống kê Quý 3 năm 2026 — Tỉnh Thanh Hóa")
        await fake_telegram.wait_for(lambda: fake_telegram.sent(ADMIN_CHAT, "sendDocument"))
        assert await second.period_tick() == 0  # asked once: not again
    finally:
        await second.stop()
    clock.advance(timedelta(hours=1))  # a later tick of the clock, the same closed quarter
    third = App(settings, clock)
    await third.start()
    try:
        assert await third.period_tick() == 0 and await third.report_tick() == 0
        await third.worker.settled()
    finally:
        await third.stop()
    assert len(fake_telegram.sent(ADMIN_CHAT, "sendDocument")) == 1
    # Nobody else was sent a report: the chief is not an admin.
    assert not fake_telegram.sent(CHIEF_QH, "sendDocument")


# ---- the command line and the report clock -----------------------------------------------------

@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("SAFESCHOOL_") and name not in KEY_SETTINGS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)


async def _cli(*args: str) -> int:
    return await asyncio.to_thread(main, ["stats", *args])


@pytest.mark.usefixtures("cli_env")
async def test_stats_json_on_the_command_line_is_the_contract(scenario, capsys,
                                                              tmp_path) -> None:
    assert await _cli("--period", "2026-Q3", "--area", "QH", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["period"]["label"] == "2026-Q3" and data["area"]["code"] == "QH"
    assert [row["area"]["code"] for row in data["areas"]] == ["HX", "PL"]
    total = data["total"]
    assert (total["received"], total["closed"], total["backlog"]) == (3, 2, 3)
    assert total["resolution_rate_percent"] == 66.7
    assert data["unclassified"] == {"count": 1, "refs": [scenario["C"]]}
    assert [b["ref"] for b in data["backlog"]] == [scenario["E"], scenario["G"], scenario["B"]]
    assert "Mô tả" not in json.dumps(data, ensure_ascii=False)
    # A custom range, the workbook and the chart, written to files.
    out = tmp_path / "q3.xlsx"
    assert await _cli("--from", "15/06/2026", "--to", "2026-09-14", "--format", "xlsx",
                      "--out", str(out)) == 0
    sheet = load_workbook(out)["Theo địa bàn"]
    assert any(row[0] == "Tổng cộng" and row[1] == 3
               for row in sheet.iter_rows(values_only=True))
    assert await _cli("--period", "2026-Q3", "--format", "png", "--out",
                      str(tmp_path / "q3.png"), "--language", "en") == 0
    assert Image.open(tmp_path / "q3.png").format == "PNG"
    assert await _cli("--period", "2026-Q3") == 0
    assert "📊 Thống kê Quý 3 năm 2026 — Toàn bộ địa bàn" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(("args", "says"), [
    (["--area", "XX"], "no area with code 'XX'"),
    (["--from", "2026-01-01"], "--from and --to go together"),
    (["--period", "2026", "--to", "2026-01-01"], "either --period or --from/--to"),
    (["--from", "31/02/2026", "--to", "2026-03-01"], "no such day"),
    (["--period", "2026-Q7"], "write 2026-Q3"),
])
async def test_bad_stats_arguments_are_one_sentence_and_exit_2(directory, capsys, args,
                                                               says) -> None:
    assert await _cli(*args, "--lang", "en") == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_a_report_whose_builder_died_is_built_again_and_sent_once(
        app, fake_telegram, sessions, clock, admin) -> None:
    await _admin_on_telegram(sessions, clock)
    async with sessions() as session, session.begin():
        person = await _person(session, ADMIN_PHONE)
        await stat_reports.request(session, key="ask:test:1", person_id=person.id,
                                   account_id=None, area_id=None,
                                   period=periods.quarter(2026, 3), now=clock.now())
        row = (await session.execute(select(StatReport))).scalar_one()
        row.status, row.claimed_at, row.attempts = "building", clock.now(), 1
    assert await app.report_tick() == 0  # another builder is on it
    clock.advance(stat_reports.BUILD_LEASE + timedelta(seconds=1))
    assert await app.report_tick() == 1  # …which died: taken again
    assert await app.report_tick() == 0
    await Chat(fake_telegram, ADMIN_CHAT).wait_text("📊 Thống kê Quý 3 năm 2026")
    await app.worker.settled()
    assert len(fake_telegram.sent(ADMIN_CHAT, "sendDocument")) == 1


async def test_the_school_disputes_an_outcome_from_the_chat_and_the_chief_hears_of_it(
        app, fake_telegram, sessions, clock, admin) -> None:
    desk = Desk(sessions)
    case_id, ref = await desk.report(LIAISON_HX, "THCS-HX", "2026-09-07 08:00", "bullying")
    await desk(OFFICER_HX, clock.now(), lambda s, x: s.close(x, case_id, "referred_school"))
    liaison = Chat(fake_telegram, LIAISON_HX)
    ask = await liaison.wait_text("Đề nghị nhà trường xác nhận")
    assert ref in ask and "Chuyển nhà trường giải quyết" in ask
    assert [label for label, _ in liaison.last_buttons()] == ["1. Xác nhận kết quả",
                                                              "2. Không đồng ý"]
    # Another school's liaison may not answer for this one.
    with pytest.raises(Refused):
        await desk(LIAISON_PL, clock.now(), lambda s, x: s.confirm(x, case_id, True))
    mark = liaison.mark()
    [answer] = await liaison.tap(liaison.button(f"case:dispute:{case_id}"))
    assert "đã được mở lại" in answer
    # The liaison reported it too: as the reporter, told it is open again.
    await liaison.wait_text(f"Vụ việc {ref} đã được mở lại để xử lý tiếp.")
    assert mark < len(liaison.received())
    chief = await Chat(fake_telegram, CHIEF_QH).wait_text("không đồng ý với kết quả")
    assert ref in chief
    await Chat(fake_telegram, OFFICER_HX).wait_text("không đồng ý với kết quả")
    # The old buttons do nothing more: the case is open again.
    [again] = await liaison.tap(liaison.button(f"case:confirm:{case_id}"))
    assert "không cần trả lời thêm" in again
    async with sessions() as session:
        incident = await session.get(Incident, case_id)
        assert incident.status == "in_progress" and incident.confirmation == "disputed"


async def test_zalo_without_a_public_address_is_told_why_the_files_did_not_come(
        app, fake_zalo, sessions, clock, admin) -> None:
    async with sessions() as session, session.begin():
        person = await _person(session, ADMIN_PHONE)
        account = Account(channel="zalo", external_id="z-admin", person_id=person.id,
                          created_at=clock.now(), code_failures=0)
        session.add(account)
        await session.flush()
        await stat_reports.request(session, key="ask:test:zalo", person_id=person.id,
                                   account_id=account.id, area_id=None,
                                   period=periods.quarter(2026, 3), now=clock.now())
    assert app.settings.public_base is None
    assert await app.report_tick() == 1
    await fake_zalo.wait_for(lambda: any("SAFESCHOOL_PUBLIC_URL" in t
                                         for t in fake_zalo.texts("z-admin")))
    assert any("📊 Thống kê Quý 3 năm 2026" in t for t in fake_zalo.texts("z-admin"))
    await app.worker.settled()
    assert not fake_zalo.sent("z-admin", "sendPhoto")


async def test_a_report_that_cannot_be_built_is_given_up_and_the_person_told(
        app, fake_telegram, sessions, clock, admin, monkeypatch) -> None:
    await _admin_on_telegram(sessions, clock)
    async with sessions() as session, session.begin():
        person = await _person(session, ADMIN_PHONE)
        await stat_reports.request(session, key="ask:test:broken", person_id=person.id,
                                   account_id=None, area_id=None,
                                   period=periods.quarter(2026, 3), now=clock.now())

    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(report_files, "chart", broken)
    assert await app.report_tick() == 0
    async with sessions() as session:
        row = (await session.execute(select(StatReport))).scalar_one()
        assert (row.status, row.attempts, row.last_error) == (
            "failed", stat_reports.MAX_ATTEMPTS, "OSError")
    told = await Chat(fake_telegram, ADMIN_CHAT).wait_text("chưa lập được báo cáo")
    assert "disk full" not in told


async def test_an_admin_appointed_after_a_period_closed_is_not_sent_its_report(
        sessions, clock, admin, settings) -> None:
    async with sessions() as session, session.begin():
        late = Person(name="Người mới", created_at=local("2026-09-16 09:00"))
        session.add(late)
        await session.flush()
        qh = (await session.execute(select(Area.id).where(Area.code == "QH"))).scalar_one()
        session.add(RoleAssignment(person_id=late.id, role=Role.ADMIN, area_id=qh,
                                   created_at=local("2026-09-16 09:00")))
    async with sessions() as session, session.begin():
        queued = await stat_reports.queue_closed_periods(session, settings,
                                                         local("2026-09-20 12:00"))
    async with sessions() as session:
        keys = sorted((await session.execute(select(StatReport.key))).scalars())
    # The province's admin (there since 7 September) gets Q3; the new one does not.
    assert queued == 1 and len(keys) == 1 and keys[0].startswith("period:2026-Q3:")


async def test_every_part_of_a_report_reads_from_one_moment(database_url, sessions) -> None:
    # On PostgreSQL a report's parts run side by side on several connections; each imports
    # the report's snapshot, so a case committed while one part runs is in none of them
    # (not in some figures and missing from others). On SQLite they share one transaction.
    readers = db.create_engine(database_url, read_only=True)
    committed = asyncio.Event()
    seen: list[int] = []

    async def commit_an_area(_session) -> None:
        async with sessions() as writer, writer.begin():
            writer.add(Area(code="NEW", name="Phường mới", level="phường"))
        committed.set()

    async def count_areas(session) -> None:
        await asyncio.wait_for(committed.wait(), 10)
        seen.append((await session.execute(select(func.count()).select_from(Area)))
                    .scalar_one())

    try:
        async with db.sessionmaker(readers)() as session:
            before = (await session.execute(select(func.count()).select_from(Area))).scalar_one()
            await statistics._side_by_side(session, [commit_an_area, count_areas])
    finally:
        await readers.dispose()
    async with sessions() as session:
        after = (await session.execute(select(func.count()).select_from(Area))).scalar_one()
    assert after == before + 1  # the area was committed while the report read
    assert seen == [before]


async def test_parents_per_school_follow_every_change_to_a_registration(directory,
                                                                        sessions) -> None:
    """The report's parents per school come from totals the database keeps as parents'
    registrations are added (one by one or in bulk), removed and moved, whatever code does
    it; a registration counts from its moment on, so a closed quarter never changes."""
    q3, q4 = periods.parse("2026-Q3"), periods.parse("2026-Q4")
    later = local("2026-11-20 12:00")

    async def parents(period) -> dict[str, int]:
        async with sessions() as session:
            report = await statistics.compute(session, period, None, now=later, tz=TZ)
        return {s.code: s.parents for s in report.schools}

    before_q3, before_q4 = await parents(q3), await parents(q4)
    async with sessions() as session, session.begin():
        schools = {s.code: s for s in (await session.execute(select(School))).scalars()}
        hx, pl = schools["THCS-HX"], schools["TH-PL"]
        people = [Person(name=f"Phụ huynh {n}", created_at=local("2026-08-01 08:00"))
                  for n in range(5)]
        session.add_all(people)
        await session.flush()
        # One by one, as registration does: two in Q3, one after it closed.
        session.add_all([
            RoleAssignment(person_id=people[0].id, role=Role.PARENT, school_id=hx.id,
                           created_at=local("2026-08-01 09:00")),
            RoleAssignment(person_id=people[1].id, role=Role.PARENT, school_id=hx.id,
                           created_at=local("2026-09-14 23:59")),
            RoleAssignment(person_id=people[2].id, role=Role.PARENT, school_id=hx.id,
                           created_at=local("2026-09-15 00:00")),
            # not a parent: never counted
            RoleAssignment(person_id=people[2].id, role=Role.LIAISON, school_id=pl.id,
                           created_at=local("2026-08-01 09:00"))])
        await session.flush()
        # In bulk, as the directory import does: two at TH-PL in Q3.
        await session.execute(insert(RoleAssignment), [
            {"person_id": p.id, "role": Role.PARENT, "school_id": pl.id,
             "created_at": local("2026-08-02 09:00")} for p in people[3:]])
    after_q3, after_q4 = await parents(q3), await parents(q4)
    assert after_q3["THCS-HX"] - before_q3["THCS-HX"] == 2
    assert after_q4["THCS-HX"] - before_q4["THCS-HX"] == 3
    assert after_q3["TH-PL"] - before_q3["TH-PL"] == 2

    async with sessions() as session, session.begin():
        # A parent forgotten (erasure deletes the role), one moved to the other school, and
        # a liaison made a parent.
        await session.execute(delete(RoleAssignment).where(
            RoleAssignment.person_id == people[0].id))
        await session.execute(update(RoleAssignment).where(
            RoleAssignment.person_id == people[3].id).values(school_id=hx.id))
        await session.execute(update(RoleAssignment).where(
            RoleAssignment.person_id == people[2].id, RoleAssignment.role == Role.LIAISON)
            .values(role=Role.PARENT))
    moved_q3, moved_q4 = await parents(q3), await parents(q4)
    assert moved_q3["THCS-HX"] - before_q3["THCS-HX"] == 2  # people 1 and 3
    assert moved_q3["TH-PL"] - before_q3["TH-PL"] == 2  # people 4 and 2 (the liaison)
    assert moved_q4["THCS-HX"] - before_q4["THCS-HX"] == 3  # and person 2, since Q4
    # And each figure is what counting the registrations themselves gives.
    async with sessions() as session:
        counted = dict((await session.execute(
            select(School.code, func.count(RoleAssignment.id))
            .join(RoleAssignment, RoleAssignment.school_id == School.id)
            .where(RoleAssignment.role == Role.PARENT).group_by(School.code))).all())
    assert {code: n for code, n in moved_q4.items() if n} == counted


# ---- outreach kept as messages are sent -------------------------------------------------------

@pytest.mark.parametrize("cutoff", [1, 15, 28])
def test_the_roll_ups_month_of_a_day_is_the_reporting_month_containing_it(cutoff) -> None:
    day = date(2025, 1, 1)
    while day < date(2027, 1, 1):
        year, number = outreach.month_of(day, cutoff)
        assert periods.month(year, number, cutoff) == periods.containing("month", day, cutoff)
        day += timedelta(days=1)


async def _brute_outreach(sessions, period: periods.Period) -> tuple[dict, dict]:
    """Outreach counted off the sent messages themselves, the slow way: per row (the district,
    by the area of the person's first message of the reporting year) and in all, people and
    people per role."""
    year_start, year_end = periods.year(int(period.label[:4])).bounds(TZ)
    start, end = period.bounds(TZ)
    async with sessions() as session:
        rows = (await session.execute(
            select(Outbox.sent_at, Outbox.id, Area.code, Area.parent_id, Account.person_id)
            .join(Account, Account.id == Outbox.account_id).join(Area, Area.id == Outbox.area_id)
            .where(Outbox.sent_at.is_not(None), Outbox.campaign_run_id.is_not(None))
            .order_by(Outbox.sent_at, Outbox.id))).all()
        roles: dict[int, set[str]] = {}
        for person, role in await session.execute(
                select(RoleAssignment.person_id, RoleAssignment.role)):
            roles.setdefault(person, set()).add(role)
    district = {"HX": "QH", "PL": "QH", "QH": "QH", "BT": "BT"}
    first_area: dict[int, str] = {}
    reached: set[int] = set()
    for sent_at, _id, code, _parent, person in rows:
        if year_start <= sent_at < year_end:
            first_area.setdefault(person, district[code])
            if start <= sent_at < end:
                reached.add(person)
    per_row: dict[tuple[str, str], int] = {}
    total: dict[str, int] = {}
    for person in reached:
        for role in ("", *roles.get(person, ())):
            per_row[(first_area[person], role)] = per_row.get((first_area[person], role), 0) + 1
            total[role] = total.get(role, 0) + 1
    return per_row, total


async def _outreach_of(sessions, spec: str) -> tuple[dict, dict]:
    report = await _stats(sessions, ADMIN_PHONE, spec, now="2026-12-20 12:00")
    per_row: dict[tuple[str, str], int] = {}
    for row in report.rows:
        if row.outreach_people:
            per_row[(row.code, "")] = row.outreach_people
        per_row.update({(row.code, role): n for role, n in row.outreach.items() if n})
    total = {role: n for role, n in report.total.outreach.items() if n}
    if report.total.outreach_people:
        total[""] = report.total.outreach_people
    return per_row, total


async def test_outreach_kept_as_messages_are_sent_equals_a_count_of_the_messages(
        admin, sessions) -> None:
    """Awareness messages over a reporting year and either side of it, counted by the roll-up
    in passes of a few messages (some read twice, one committed late and read by the next
    pass, some not read yet when the report asks): every month, quarter, half and the year
    show each person reached once, in the district of their year's first message, under each
    of their roles."""
    rng = random.Random(20261207)
    async with sessions() as session, session.begin():
        areas = {a.code: a.id for a in (await session.execute(select(Area))).scalars()}
        school = (await session.execute(select(School).where(School.code == "TH-PL"))
                  ).scalar_one()
        for n in range(11):  # more parents; the first is also the school's liaison
            parent = Person(created_at=local("2025-11-01 08:00"))
            session.add(parent)
            await session.flush()
            for role in (Role.PARENT, Role.LIAISON) if n == 0 else (Role.PARENT,):
                session.add(RoleAssignment(person_id=parent.id, role=role, school_id=school.id,
                                           created_at=local("2025-11-01 08:00")))
            session.add(Account(channel="telegram", external_id=f"77{n}", person_id=parent.id,
                                created_at=local("2025-11-01 08:00"), code_failures=0))
        accounts = [(a.id, a.external_id) for a in (await session.execute(
            select(Account).where(Account.person_id.is_not(None)).order_by(Account.id)))
            .scalars()]
    first = local("2025-12-10 00:00")
    instants = sorted(first + timedelta(minutes=rng.randrange(0, 380 * 24 * 60))
                      for _ in range(150))
    instants += [local("2025-12-15 00:00"), local("2026-03-14 23:59"), local("2026-03-15 00:00")]
    instants.sort()
    instants[40] = instants[41]  # two messages in one instant (one commit marks both sent)
    messages = [(at, *rng.choice(accounts[:-1]), rng.choice(["HX", "PL", "QH", "BT"]))
                for at in instants]
    chunks = [messages[:60], messages[60:110], messages[110:]]
    # One committed late: sent half a minute before the last message the first pass read,
    # to the one parent nothing else reaches.
    late = (chunks[0][-1][0] - timedelta(seconds=30), *accounts.pop(), "BT")
    specs = [f"2026-{m:02d}" for m in range(1, 13)] + [f"2026-Q{q}" for q in range(1, 5)] + [
        "2026-H1", "2026-H2", "2026"]

    async def send(chunk) -> None:
        async with sessions() as session, session.begin():
            for at, account_id, chat, code in chunk:
                session.add(Outbox(
                    idempotency_key=f"campaign:{at.isoformat()}:{chat}:{rng.random()}",
                    account_id=account_id, channel="telegram", chat_id=chat,
                    priority=Priority.CAMPAIGN, payload={"text": "Tuyên truyền"},
                    status=OutboxStatus.SENT, attempts=1, next_attempt_at=at, created_at=at,
                    sent_at=at, campaign_run_id=1, area_id=areas[code]))

    async def every_period_agrees(stage: str) -> None:
        for spec in specs:
            expected = await _brute_outreach(sessions, periods.parse(spec))
            assert await _outreach_of(sessions, spec) == expected, (stage, spec)

    def roll() -> object:
        return outreach.roll_up(sessions, cutoff=15, tz=TZ, batch=7)

    await send(chunks[0])
    assert await roll() == len(chunks[0])
    assert await roll() > 0  # the margin read again: nothing counted twice
    await send(chunks[1])
    await every_period_agrees("the second part not read yet")
    await send([late])
    assert await roll() >= len(chunks[1]) + 1
    await send(chunks[2])
    await every_period_agrees("the third part not read yet")
    await roll()
    await every_period_agrees("everything read")
    async with sessions() as session:
        kept = (await session.execute(select(func.sum(ReachCount.people)).where(
            ReachCount.period == "2026", ReachCount.role == ""))).scalar_one()
    _, total = await _brute_outreach(sessions, periods.parse("2026"))
    assert kept == total[""] > 10  # read from the kept counts, not only the unread part


async def test_a_report_far_ahead_of_the_count_reads_the_messages_not_its_memory(
        sessions, scenario, monkeypatch) -> None:
    """When more messages are unread than a report should hold in memory (the first count
    after an upgrade, a leader long away), it counts from the messages themselves."""
    def not_here(*_args, **_kwargs):
        raise AssertionError("the report tallied the unread messages itself")

    monkeypatch.setattr(outreach, "UNREAD_MAX", 2)  # the scenario has 4 sent, none counted
    monkeypatch.setattr(outreach, "tally", not_here)
    report = await _stats(sessions, CHIEF_QH, "2026-Q3")
    hx, pl = report.rows[0], report.rows[1]
    assert hx.outreach == {"parent": 1, "liaison": 1} and hx.outreach_people == 2
    assert report.total.outreach_people == 2 and pl.outreach_people == 0


async def test_erasure_forgets_the_months_that_reached_a_person_and_keeps_the_counts(
        admin, sessions) -> None:
    async with sessions() as session, session.begin():
        hx = (await session.execute(select(Area.id).where(Area.code == "HX"))).scalar_one()
        account = (await session.execute(select(Account).where(
            Account.external_id == str(PARENT_HX)))).scalar_one()
        at = local("2026-08-01 09:00")
        session.add(Outbox(idempotency_key="campaign:erase", account_id=account.id,
                           channel="telegram", chat_id=str(PARENT_HX),
                           priority=Priority.CAMPAIGN, payload={"text": "Tuyên truyền"},
                           status=OutboxStatus.SENT, attempts=1, next_attempt_at=at,
                           created_at=at, sent_at=at, campaign_run_id=1, area_id=hx))
    assert await outreach.roll_up(sessions, cutoff=15, tz=TZ) == 1
    async with sessions() as session, session.begin():
        person = (await session.get(Account, account.id)).person
        await session.refresh(person, ["roles"])
        assert (await session.execute(select(func.count()).select_from(ReachYear).where(
            ReachYear.person_id == person.id))).scalar_one() == 1
        service = CaseService(session, now=local("2026-09-01 09:00"), tz=TZ,
                              default_language="vi")
        await erase(session, person, service, Actor(None, "cli"), local("2026-09-01 09:00"))
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(ReachYear))
                ).scalar_one() == 0
    per_row, total = await _outreach_of(sessions, "2026-Q3")
    # Counted as they were when the message was read: a parent, reached in Q3.
    assert total == {"": 1, "parent": 1} and per_row == {("QH", ""): 1, ("QH", "parent"): 1}
