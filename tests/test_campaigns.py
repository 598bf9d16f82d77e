"""Awareness campaigns: timing, quiet hours, audiences, priority, restarts, consent, counts."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.app import App
from bot.cli import main
from bot.core.clock import FakeClock
from bot.services import campaigns as svc
from bot.services.content import audience_mismatch, calendar, check_items, library
from bot.services.timing import QuietHours
from storage.areas import subtree
from storage.models import Account, Campaign, CampaignRun, Outbox, OutboxStatus, Person, Priority
from tests.auxil.audience import add_parents
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import eventually
from tests.auxil.people import LIAISON_HX, OFFICER_HX, PARENT_HX, Chat, link_everyone
from tests.conftest import make_settings

pytestmark = pytest.mark.usefixtures("directory")
# The fake clock starts on Monday 2026-09-07 at 08:00 in Hanoi (01:00 UTC).


async def create(sessions, clock, *, areas=("QH",), **fields) -> int:
    """Create an active campaign directly; return its id."""
    from storage.models import Area

    async with sessions() as session, session.begin():
        ids = [(await session.execute(select(Area.id).where(Area.code == code))).scalar_one()
               for code in areas]
        values = {"name": "Thử nghiệm", "roles": ["parent"], "content_ids": ["whom_to_call"],
                  "schedule": "once", "starts_at": clock.now(), "runs_done": 0,
                  "created_at": clock.now(), "status": "draft", "area_ids": ids, **fields}
        campaign = Campaign(**values)
        session.add(campaign)
        await session.flush()
        from zoneinfo import ZoneInfo

        svc.activate(campaign, clock.now(), ZoneInfo("Asia/Ho_Chi_Minh"))
        return campaign.id


async def campaign_rows(sessions) -> list[Outbox]:
    async with sessions() as session:
        return list((await session.execute(select(Outbox).where(
            Outbox.priority == Priority.CAMPAIGN).order_by(Outbox.id))).scalars())


async def all_sent(sessions) -> bool:
    rows = await campaign_rows(sessions)
    return bool(rows) and all(r.status == OutboxStatus.SENT for r in rows)


async def test_recurring_campaign_fires_at_local_time_and_waits_out_quiet_hours(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    async with sessions() as session, session.begin():
        await add_parents(session, "THCS-HX", 3, clock.now(), first_chat=5000)
    await create(sessions, clock, schedule="cron: 0 19 * * sun",
                 content_ids=["abuse_signs", "online_tricks"])
    sunday_7pm = datetime(2026, 9, 13, 12, 0, tzinfo=UTC)  # 19:00 in Hanoi
    clock.advance(sunday_7pm - clock.now() - timedelta(minutes=1))
    assert (await app.tick())["campaign"] == 0
    clock.advance(timedelta(minutes=1))
    assert (await app.tick())["campaign"] == 3
    await eventually(lambda: all_sent(sessions))
    texts = [p["text"] for p in fake_telegram.sent() if int(p["chat_id"]) >= 5000]
    assert len(texts) == 3 and all(t.startswith("Dấu hiệu trẻ có thể bị xâm hại") for t in texts)
    assert all("/stop" in t for t in texts)  # every message says how to stop
    # A week later the next item in turn, at the same local time.
    clock.advance(timedelta(days=7))
    assert (await app.tick())["campaign"] == 3
    await eventually(lambda: all_sent(sessions))
    assert sum("Thủ đoạn thường gặp" in p["text"] for p in fake_telegram.sent()) == 3

    # A campaign due at 22:00 is opened on time but delivered at 07:00, not during the night.
    await create(sessions, clock, schedule="cron: 0 22 * * *", content_ids=["whom_to_call"])
    ten_pm = datetime(2026, 9, 20, 15, 0, tzinfo=UTC)
    clock.advance(ten_pm - clock.now())
    await app.tick()
    night = [r for r in await campaign_rows(sessions) if "111 — Tổng đài" in r.payload["text"]]
    assert len(night) == 3
    assert {r.next_attempt_at for r in night} == {datetime(2026, 9, 21, 0, 0, tzinfo=UTC)}
    clock.advance(timedelta(hours=8, minutes=59))  # 06:59 local
    await app.worker.settled()
    assert not any("111 — Tổng đài" in p["text"] for p in fake_telegram.sent())
    clock.advance(timedelta(minutes=1))
    await eventually(lambda: all_sent(sessions))
    assert sum("111 — Tổng đài" in p["text"] for p in fake_telegram.sent()) == 3


async def test_quiet_hours_never_hold_an_alert(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await link_everyone(sessions, clock)
    clock.advance(timedelta(hours=15))  # 23:00 local
    from tests.test_reports import file_report

    await file_report(Chat(fake_telegram, LIAISON_HX))
    [alert] = await Chat(fake_telegram, OFFICER_HX).wait(1)
    assert "Vụ việc mới" in alert


async def test_audience_filters_select_exactly_the_right_people(sessions, clock) -> None:
    now = clock.now()
    async with sessions() as session, session.begin():
        hx_vi = await add_parents(session, "THCS-HX", 4, now, first_chat=6000)
        hx_en = await add_parents(session, "THCS-HX", 2, now, first_chat=6100, language="en")
        pl = await add_parents(session, "TH-PL", 3, now, first_chat=6200)
    await link_everyone(sessions, clock)  # adds liaisons, officers and one more HX parent

    async def audience(**fields) -> set[int]:
        async with sessions() as session, session.begin():
            campaign = Campaign(name="x", status="draft", schedule="once", starts_at=now,
                                runs_done=0, created_at=now, **fields)
            areas = await subtree(session, campaign.area_ids)
            people, cursor = set(), 0
            while batch := await svc._batch(session, campaign, areas, cursor):
                cursor = batch[-1][0]
                found = {p.id: p for p in (await session.execute(
                    select(Person).where(Person.id.in_([b[0] for b in batch])))).scalars()}
                people |= {pid for pid, _ in batch
                           if svc._language_ok(campaign, found[pid], "vi")}
            await session.rollback()
            return people

    ids = await _area_ids(sessions)
    everyone_qh = await audience(area_ids=[ids["QH"]], roles=["parent"])
    assert set(hx_vi) | set(hx_en) | set(pl) <= everyone_qh and len(everyone_qh) == 10
    assert await audience(area_ids=[ids["PL"]], roles=["parent"]) == set(pl)
    assert await audience(area_ids=[ids["QH"]], roles=["parent"],
                          school_levels=["THCS"]) == everyone_qh - set(pl)
    assert await audience(area_ids=[ids["TH"]], roles=["parent"], languages=["en"]) == set(hx_en)
    staff = await audience(area_ids=[ids["QH"]], roles=["liaison", "officer"])
    assert len(staff) == 2 + 3  # two liaisons; officers of HX (2) and the chief of QH
    assert await audience(area_ids=[ids["BT"]], roles=["parent"]) == set()


async def _area_ids(sessions) -> dict[str, int]:
    from storage.models import Area

    async with sessions() as session:
        return dict((await session.execute(select(Area.code, Area.id))).all())


async def test_an_alert_overtakes_a_running_10000_recipient_campaign(
        database_url, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    app = App(make_settings(database_url, fake_telegram, telegram_rate_per_second=10_000,
                            outbox_concurrency=4), clock)
    fake_telegram.send_latency = 0.002
    await app.start()
    try:
        await link_everyone(sessions, clock)
        async with sessions() as session, session.begin():
            await add_parents(session, "TH-PL", 10_000, clock.now(), first_chat=100_000)
        campaign_id = await create(sessions, clock, areas=("PL",))
        assert (await app.tick())["campaign"] == 10_000
        await fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= 200, timeout=60)
        from tests.test_reports import file_report

        await file_report(Chat(fake_telegram, LIAISON_HX))
        await Chat(fake_telegram, OFFICER_HX).wait_text("Vụ việc mới", timeout=10)
        campaign_sent = sum(1 for p in fake_telegram.sent() if int(p["chat_id"]) >= 100_000)
        assert campaign_sent < 9_000  # the alert did not wait behind the campaign
    finally:
        assert await asyncio.to_thread(_cancel, database_url, campaign_id) == 0
        await app.stop()


def _cancel(database_url: str, campaign_id: int) -> int:
    import os

    os.environ["SAFESCHOOL_DATABASE_URL"] = database_url
    try:
        return main(["campaign", "cancel", str(campaign_id)])
    finally:
        del os.environ["SAFESCHOOL_DATABASE_URL"]


async def test_a_restart_mid_campaign_resumes_with_no_duplicate(
        database_url, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    settings = make_settings(database_url, fake_telegram, telegram_rate_per_second=10_000)
    audience = svc.BATCH + 300
    async with sessions() as session, session.begin():
        await add_parents(session, "THCS-HX", audience, clock.now(), first_chat=20_000)
    await create(sessions, clock)
    # The first process opens the run and queues one batch, then dies.
    async with sessions() as session, session.begin():
        [run_id] = await svc.start_due_runs(session, clock.now(), settings.tz)
    async with sessions() as session, session.begin():
        run = await session.get(CampaignRun, run_id)
        campaign = await session.get(Campaign, run.campaign_id)
        first = await svc.queue_batch(session, run, campaign, now=clock.now(),
                                      quiet=_quiet(settings), default_language="vi")
    assert first.queued == svc.BATCH
    app = App(settings, clock)
    await app.start()  # its first tick resumes the run at the cursor
    try:
        await fake_telegram.wait_for(
            lambda: len({p["chat_id"] for p in fake_telegram.sent()}) >= audience, timeout=90)
        await eventually(lambda: all_sent(sessions), timeout=30)
        # Even replaying the run from the start queues nobody twice.
        async with sessions() as session, session.begin():
            await session.execute(update(CampaignRun).values(cursor=0, status="running"))
        await app.tick()
        assert (await app.tick())["campaign"] == 0
    finally:
        await app.stop()
    counts = Counter(p["chat_id"] for p in fake_telegram.sent())
    assert len(counts) == audience and set(counts.values()) == {1}


def _quiet(settings):
    return QuietHours.parse(settings.quiet_hours, settings.tz)


async def test_stop_start_and_topics_are_honoured(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await link_everyone(sessions, clock)
    parent = Chat(fake_telegram, PARENT_HX)
    [stopped] = await parent.say("/stop")
    assert "Đã ngừng" in stopped
    await create(sessions, clock, areas=("HX",))
    await app.tick()
    assert await campaign_rows(sessions) == []
    [resumed] = await parent.say("/start")
    assert "nhận lại" in resumed
    await parent.say("/topics")
    [saved] = await parent.tap("topics:toggle:cyber")
    assert "Đã lưu" in saved
    assert any(label.endswith("⬜ An toàn trên mạng") for label, _ in parent.last_buttons())
    await create(sessions, clock, areas=("HX",), content_ids=["online_tricks"])
    await app.tick()
    assert await campaign_rows(sessions) == []  # a cyber item, and cyber is switched off
    await create(sessions, clock, areas=("HX",), content_ids=["abuse_signs"])
    await app.tick()
    assert len(await campaign_rows(sessions)) == 1
    async with sessions() as session:
        runs = (await session.execute(select(CampaignRun).order_by(CampaignRun.id))).scalars()
        stats = [await svc.run_stats(session, r.id) for r in runs]
    assert [s["HX"].opted_out for s in stats] == [1, 1, 0]


async def test_outreach_is_counted_per_area(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock, capsys) -> None:
    now = clock.now()
    async with sessions() as session, session.begin():
        hx = await add_parents(session, "THCS-HX", 3, now, first_chat=7000)
        await add_parents(session, "THCS-HX", 1, now, first_chat=7100, with_account=False)
        await add_parents(session, "TH-PL", 2, now, first_chat=7200)
        await session.execute(update(Person).where(Person.id == hx[0])
                              .values(campaigns_stopped=True))
    fake_telegram.fail("sendMessage", 400, description="Bad Request: chat not found",
                       chat_id=7201)
    campaign_id = await create(sessions, clock)
    await app.tick()

    async def settled() -> bool:
        rows = await campaign_rows(sessions)
        return len(rows) == 4 and all(r.status in ("sent", "dead") for r in rows)

    await eventually(settled)
    async with sessions() as session:
        [run] = (await session.execute(select(CampaignRun))).scalars()
        stats = await svc.run_stats(session, run.id)
    hx_stats, pl_stats = stats["HX"], stats["PL"]
    assert (hx_stats.targeted, hx_stats.sent, hx_stats.opted_out, hx_stats.unreachable) == \
        (4, 2, 1, 1)
    assert (pl_stats.targeted, pl_stats.sent, pl_stats.failed) == (2, 1, 1)
    os_env = {"SAFESCHOOL_DATABASE_URL": app.settings.database_url}
    import os

    os.environ.update(os_env)
    try:
        assert await asyncio.to_thread(main, ["campaign", "show", str(campaign_id)]) == 0
    finally:
        del os.environ["SAFESCHOOL_DATABASE_URL"]
    table = capsys.readouterr().out.splitlines()
    assert "đã gửi" in table[2] and "đang chờ" in table[2]  # the columns, in Vietnamese
    pl_row = next(line.split() for line in table if line.split()[:1] == ["PL"])
    assert pl_row[1:4] == ["2", "1", "1"]  # targeted, sent, failed: the figures above


async def test_admin_creates_a_campaign_in_the_chat_with_preview_and_reach(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    from storage.models import Area, Role, RoleAssignment

    await link_everyone(sessions, clock)
    now = clock.now()
    async with sessions() as session, session.begin():
        qh = (await session.execute(select(Area).where(Area.code == "QH"))).scalar_one()
        admin = Person(name="Ban Chỉ đạo huyện", created_at=now)
        session.add(admin)
        await session.flush()
        session.add_all([RoleAssignment(person_id=admin.id, role=Role.ADMIN, area_id=qh.id,
                                        created_at=now),
                         Account(channel="telegram", external_id="960", person_id=admin.id,
                                 created_at=now, code_failures=0)])
        await add_parents(session, "TH-PL", 5, now, first_chat=8000)
    chat = Chat(fake_telegram, 960)
    await chat.say("/campaign")
    await chat.tap("campaign:audience:parents")
    topics = [data for _label, data in chat.last_buttons()]
    assert "campaign:topic:trafficking" in topics and len(topics) == 5
    await chat.tap("campaign:topic:abuse")
    offered = [data.rpartition(":")[2] for _label, data in chat.last_buttons()]
    # Only what is written for parents: a teacher's do-and-don't never goes to families.
    assert "when_child_tells" in offered and "abuse_signs" in offered
    assert "staff_disclosure_do" not in offered and "body_safety_students" not in offered
    [stale] = await chat.tap("campaign:topic:trafficking")  # an old button
    assert "không còn hiệu lực" in stale
    await chat.tap("campaign:content:when_child_tells")  # the question on screen still works
    preview, sample, reach = await chat.tap("campaign:when:now", replies=3)
    assert "XEM TRƯỚC" in preview and sample.startswith("Khi con kể bị xâm hại")
    assert "6 người" in reach  # five parents in PL and one in HX
    [started] = await chat.tap("campaign:start")
    assert "Đã bắt đầu" in started
    await app.tick()
    await eventually(lambda: all_sent(sessions))
    assert len(await campaign_rows(sessions)) == 6
    [listing] = await chat.say("/campaigns")
    assert "đang chạy" in listing or "đã xong" in listing
    [officer_try] = await Chat(fake_telegram, OFFICER_HX).say("/campaign")
    assert "quản trị viên" in officer_try


async def test_cli_creates_previews_pauses_resumes_and_cancels(
        database_url, sessions, clock, monkeypatch, capsys) -> None:
    import json

    await link_everyone(sessions, clock)
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)

    def run(*args: str) -> int:
        return main(list(args))

    code = await asyncio.to_thread(run, "campaign", "create", "--calendar", "action_month",
                                   "--area", "QH", "--preview-to", "0987654321", "--json")
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "draft" and info["schedule"] == "cron: 0 9 * 6 mon"
    assert info["targeted"] == 3  # the parent and the two liaisons under QH
    async with sessions() as session:
        preview = (await session.execute(select(Outbox.payload).where(
            Outbox.idempotency_key.like("preview:%")))).scalar_one()
    assert "XEM TRƯỚC" in preview["text"] and "Tháng hành động" in preview["text"]
    assert await asyncio.to_thread(run, "campaign", "resume", str(info["id"])) == 0
    async with sessions() as session:
        campaign = await session.get(Campaign, info["id"])
    assert campaign.status == "active"
    assert campaign.next_run_at == datetime(2027, 6, 7, 2, 0, tzinfo=UTC)  # Mon 7 June, 09:00
    capsys.readouterr()
    assert await asyncio.to_thread(run, "campaign", "list", "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["next_run_at"] == "2027-06-07T09:00:00+07:00"  # local time, as printed
    assert await asyncio.to_thread(run, "campaign", "pause", str(info["id"])) == 0
    assert await asyncio.to_thread(run, "campaign", "cancel", str(info["id"])) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(run, "campaign", "resume", str(info["id"])) == 2
    assert "«đã hủy»" in capsys.readouterr().err
    assert await asyncio.to_thread(run, "campaign", "resume", str(info["id"]), "--lang",
                                   "en") == 2
    assert "cancelled" in capsys.readouterr().err
    assert await asyncio.to_thread(run, "campaign", "create", "--area", "QH", "--text-vi",
                                   "Thử", "--cron", "every monday") == 2
    assert "Không đọc được lịch gửi" in capsys.readouterr().err
    # Content written for teachers, sent to parents: refused until confirmed with --yes.
    async with sessions() as session:
        before = len((await session.execute(select(Campaign.id))).all())
    assert await asyncio.to_thread(run, "campaign", "create", "--area", "QH", "--content",
                                   "staff_disclosure_do") == 2
    err = capsys.readouterr().err
    assert "không được viết cho đối tượng: phụ huynh" in err and "--yes" in err
    assert await asyncio.to_thread(run, "campaign", "create", "--area", "QH", "--content",
                                   "staff_disclosure_do", "--roles", "liaison") == 0  # theirs
    assert await asyncio.to_thread(run, "campaign", "create", "--area", "QH", "--content",
                                   "staff_disclosure_do", "--yes") == 0
    async with sessions() as session:
        assert len((await session.execute(select(Campaign.id))).all()) == before + 2


def test_content_library_is_complete_and_fits_every_channel() -> None:
    items = library()
    assert len(items) >= 60  # a school year of weekly tips without repeating every season
    audiences = {a for i in items.values() for a in i.audiences}
    assert audiences == {"parents", "staff", "students"}
    for needed in ("drowning_rules", "online_kidnapping", "body_safety_small", "drugs_day",
                   "tet_safety", "family_day", "domestic_violence_month", "child_marriage",
                   "cyber_age_under6", "cyber_age_15_17", "staff_disclosure_do",
                   "staff_disclosure_dont", "mental_health_signs"):
        assert needed in items, needed
    for entry in calendar().values():  # the built-in calendar never needs a confirmation
        assert not audience_mismatch(entry.content, entry.roles), entry.id
    weekly = calendar()["weekly_parent_tip"].content
    assert len(set(weekly)) == len(weekly) >= 26  # each tip at most twice a year
    assert {i.topic for i in items.values()} == {"abuse", "violence", "cyber", "trafficking",
                                                 "general"}
    assert all(i.vi and i.en and len(i.vi) <= 700 and len(i.en) <= 700 for i in items.values())
    for item in items.values():  # a label in the chat ends at a word, never inside one
        for language in ("vi", "en"):
            title, head = item.title(language), item.text(language).partition(":")[0].strip()
            assert len(title) <= 60
            if title != head:
                cut = title.removesuffix("…")
                assert title.endswith("…") and head.startswith(cut)
                assert not head[len(cut)].isalnum(), (title, head)
    _, problems = check_items([
        {"id": "a", "topic": "cyber", "audiences": ["parents"], "vi": "x" * 800, "en": "y"},
        {"id": "b", "topic": "weather", "audiences": ["parents"], "vi": "x", "en": ""},
    ])
    assert "library item 1 (a): vi text has 800 characters, more than 700" in problems
    assert "library item 2 (b): missing en" in problems

