"""A person's rights over their data: export it, erase it (from the command line, or a parent
with /forget), and the audit of who saw what (`safeschool audit`)."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.services import periods, statistics
from bot.services.cases import reporter_of
from bot.services.retention import PURGED
from storage import crypto
from storage.models import Account, Incident, IncidentEvent, Outbox, Person
from tests.auxil.people import LIAISON_HX, OFFICER_HX, PARENT_HX, PHONES, Chat
from tests.conftest import TEST_DATA_KEY, TEST_RELAY_KEY
from tests.test_reports import file_report
from tests.test_reports import people as people  # the fixture, reused

DESCRIPTION = "Em lớp 7 bị nhóm bạn chặn đánh ở nhà xe"
TEACHER = PHONES[LIAISON_HX]


async def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def _figures(sessions, clock, settings) -> dict:
    period = periods.custom(date(2026, 1, 1), date(2026, 12, 31))
    async with sessions() as session:
        return (await statistics.compute(session, period, None, now=clock.now(),
                                         tz=settings.tz)).to_json()


async def test_export_erase_and_audit_from_the_command_line(
        app, fake_telegram, sessions, clock, people, settings, database_url, monkeypatch,
        capsys) -> None:
    teacher, parent = Chat(fake_telegram, LIAISON_HX), Chat(fake_telegram, PARENT_HX)
    officer = Chat(fake_telegram, OFFICER_HX)
    await file_report(teacher, description=DESCRIPTION)
    await file_report(parent, anonymous=True, description="Con tôi bị bắt nạt trên mạng")
    await officer.wait(2)
    async with sessions() as session:
        named, anonymous = (await session.execute(
            select(Incident).order_by(Incident.id))).scalars().all()
    [shown] = await officer.say(f"/case {named.ref}")
    assert DESCRIPTION in shown
    await app.worker.settled()
    await app.stop()
    before = await _figures(sessions, clock, settings)
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)

    # Export: everything held about the teacher, their own report's words included.
    code, out, _ = await _cli(capsys, "person", "export", TEACHER)
    held = json.loads(out)
    assert code == 0 and held["person"]["name"] == "Nguyễn Thị Hoa"
    assert [(a["channel"], a["id"]) for a in held["accounts"]] == [("telegram", str(LIAISON_HX))]
    assert [(r["role"], r["school"]) for r in held["roles"]] == [("liaison", "THCS-HX")]
    assert [(r["ref"], r["description"]) for r in held["reports"]] == [(named.ref, DESCRIPTION)]
    assert held["messages_received"]["count"] > 0
    # The parent (no phone: joined with the school's code) by their account; their anonymous
    # report is not named to whoever runs the export.
    code, out, _ = await _cli(capsys, "person", "export", f"telegram:{PARENT_HX}")
    assert code == 0 and json.loads(out)["reports"] == [] and anonymous.ref not in out

    # The audit: who saw the case, and what the officer saw.
    code, out, _ = await _cli(capsys, "audit", "--case", named.ref.lower(), "--json")
    lines = json.loads(out)
    assert code == 0 and ("Lê Văn An", "viewed") in [(x["person"], x["action"]) for x in lines]
    assert all(x["subject"] == named.ref for x in lines)
    code, out, _ = await _cli(capsys, "audit", "--case", named.ref, "--json",
                              "--from", "01/01/2000", "--to", "2000-01-31")
    assert code == 0 and json.loads(out) == []  # nothing was seen that month
    code, out, _ = await _cli(capsys, "audit", "--case", named.ref, "--json",
                              "--from", "2000-01-01")
    assert len(json.loads(out)) == len(lines)
    assert (await _cli(capsys, "audit", "--case", named.ref, "--from", "hôm qua"))[0] == 2
    code, out, _ = await _cli(capsys, "audit", "--person", PHONES[OFFICER_HX], "--lang", "en")
    assert code == 0 and f"viewed  {named.ref}" in out and f"alerted  {anonymous.ref}" in out
    code, out, _ = await _cli(capsys, "audit", "--person", PHONES[OFFICER_HX], "--json")
    assert {x["person"] for x in json.loads(out)} == {"Lê Văn An"}  # nobody else's lines
    assert (await _cli(capsys, "audit"))[0] == 2
    assert (await _cli(capsys, "audit", "--case", "HX-00-NONE"))[0] == 2

    # Erase refuses while the teacher's named report is open: the officer may need them.
    code, _, err = await _cli(capsys, "person", "erase", TEACHER)
    assert code == 2 and named.ref in err
    async with sessions() as session:
        assert (await session.get(Incident, named.id)).reporter_person_id is not None
    code, out, _ = await _cli(capsys, "person", "erase", TEACHER, "--force", "--json")
    assert code == 0 and json.loads(out)["cases_unlinked"] == 1
    code, out, _ = await _cli(capsys, "person", "erase", f"telegram:{PARENT_HX}", "--lang", "en")
    assert code == 0 and "1 cases no longer link" in out and anonymous.ref not in out

    async with sessions() as session:
        case = await session.get(Incident, named.id)
        assert (case.reporter_person_id, case.reporter_account_id) == (None, None)
        assert reporter_of(await session.get(Incident, anonymous.id)) == (None, None)
        kinds = (await session.execute(select(IncidentEvent.kind).where(
            IncidentEvent.incident_id == named.id))).scalars().all()
        assert "reporter_erased" in kinds
        person = (await session.execute(select(Person).where(
            Person.erased_at.is_not(None)).order_by(Person.id))).scalars().all()
        assert [(p.name, p.phone, p.roles) for p in person] == [(None, None, [])] * 2
        accounts = (await session.execute(select(Account).where(
            Account.person_id.is_(None)))).scalars().all()
        assert {a.external_id for a in accounts} >= {
            f"erased:{a.id}" for a in accounts if a.blocked_at is not None}
        assert not {str(LIAISON_HX), str(PARENT_HX)} & {a.external_id for a in accounts}
        payloads = (await session.execute(select(Outbox.payload).where(
            Outbox.account_id.in_([a.id for a in accounts])))).scalars().all()
        assert payloads and all(p == PURGED for p in payloads)
    assert await _figures(sessions, clock, settings) == before  # the cases still count
    assert (await _cli(capsys, "person", "export", TEACHER))[0] == 2  # nobody by that number


async def test_a_parent_forgets_themselves_in_the_chat_and_staff_are_sent_to_the_admin(
        app, fake_telegram, sessions, people, clock) -> None:
    parent, officer = Chat(fake_telegram, PARENT_HX), Chat(fake_telegram, OFFICER_HX)
    [question] = await parent.say("/forget")
    assert "xóa dữ liệu" in question and parent.button("forget:yes")
    assert "giữ nguyên" in (await parent.tap("forget:no"))[0]
    async with sessions() as session:
        assert (await session.execute(select(Account.person_id).where(
            Account.external_id == str(PARENT_HX)))).scalar_one() is not None
    await parent.say("/forget")
    [farewell] = await parent.tap("forget:yes")
    assert "Đã xóa dữ liệu" in farewell
    async with sessions() as session:
        gone = (await session.execute(select(Person).where(
            Person.erased_at.is_not(None)))).scalar_one()
        assert gone.roles == []
    await app.worker.settled()
    async with sessions() as session:  # nothing was queued to the stripped account
        assert not (await session.execute(select(Outbox.id).where(
            Outbox.chat_id.like("erased%"), Outbox.purged_at.is_(None)))).all()
    # The same chat, back later, is a stranger; joining again would start afresh.
    [again] = await parent.say("/me")
    assert "chưa đăng ký" in again
    [staff] = await officer.say("/forget")
    assert "quản trị viên" in staff


@pytest.fixture(autouse=True)
def _keys_back():
    yield  # the command line configures the keys of this process again
    crypto.configure([TEST_DATA_KEY])
    crypto.configure_relay(TEST_RELAY_KEY)
