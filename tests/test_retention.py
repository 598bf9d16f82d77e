"""Retention: what is kept only as long as it is needed, on a moved clock; statistics of the
period read the same before and after."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.services import periods, retention, statistics
from bot.services.retention import PURGED
from storage import crypto
from storage.models import (
    Account,
    Conversation,
    InboxItem,
    Incident,
    IncidentAttachment,
    IncidentEvent,
    Outbox,
    OutboxStatus,
)
from tests.auxil.people import LIAISON_HX, OFFICER_HX, PARENT_HX, Chat, ask_and_answer
from tests.conftest import TEST_DATA_KEY, TEST_RELAY_KEY
from tests.test_reports import file_report
from tests.test_reports import people as people  # the fixture, reused

PERIOD = periods.custom(date(2026, 9, 1), date(2026, 10, 31))
QUESTION = "Cháu có bị thương ở tay không?"
ANSWER = "Có, cháu bị bầm ở cổ tay trái."


async def _figures(sessions, clock, settings) -> dict:
    async with sessions() as session:
        report = await statistics.compute(session, PERIOD, None, now=clock.now(),
                                          tz=settings.tz)
    return report.to_json()


async def _close(officer: Chat, case_id: int, outcome: str) -> None:
    await officer.tap(f"case:ack:{case_id}")
    await officer.tap(f"case:close:{case_id}")
    await officer.tap(f"case:close:{case_id}:{outcome}")


async def test_retention_removes_exactly_what_is_due_and_statistics_stay_the_same(
        app, fake_telegram, sessions, clock, people, settings) -> None:
    parent, teacher = Chat(fake_telegram, PARENT_HX), Chat(fake_telegram, LIAISON_HX)
    officer = Chat(fake_telegram, OFFICER_HX)
    await file_report(parent, anonymous=True, description="Con tôi bị đánh ở nhà xe")
    await file_report(teacher, description="Một em bị dọa giết qua mạng")
    await officer.wait(2)
    async with sessions() as session:
        mine, criminal = (await session.execute(
            select(Incident).order_by(Incident.id))).scalars().all()
    # A question and its answer on the timeline; a photo kept on disk.
    await ask_and_answer(officer, parent, mine.id, QUESTION, ANSWER)
    photo = Path(settings.media_dir) / str(mine.id) / "1.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(crypto.seal_bytes(b"\xff\xd8 a child's photo"))
    async with sessions() as session, session.begin():
        session.add(IncidentAttachment(
            incident_id=mine.id, channel="zalo", kind="photo", ref="https://cdn/x.jpg",
            source="reporter", stored_path=str(photo), created_at=clock.now()))
    await _close(officer, mine.id, "handled_by_police")
    await _close(officer, criminal.id, "criminal_case")  # proceedings: kept whole
    # A report the teacher began and left: a draft.
    await teacher.say("/report")
    await teacher.tap("report:danger:no")
    await teacher.tap("report:cat:bullying")
    await app.worker.settled()

    clock.advance(timedelta(days=60))  # the period is over; nothing is due yet but drafts
    before = await _figures(sessions, clock, settings)
    policy = retention.Policy.of(settings)
    async with sessions() as session:
        early = await retention.plan(session, policy, clock.now())
    assert early.cases == [] and early.drafts == 1

    clock.advance(timedelta(days=730))
    async with sessions() as session:
        due = await retention.plan(session, policy, clock.now())
        sent = (await session.execute(select(func.count()).select_from(Outbox).where(
            Outbox.status == OutboxStatus.SENT))).scalar_one()
        handled = (await session.execute(select(func.count()).select_from(InboxItem).where(
            InboxItem.processed_at.is_not(None)))).scalar_one()
    assert due.cases == [mine.ref] and due.held == [criminal.ref] and due.files == 1
    assert due.messages >= sent > 10 and due.updates == handled and due.drafts == 1

    done = await app.retention_tick()
    assert done is not None and done.as_json() == due.as_json()

    async with sessions() as session:
        redacted = await session.get(Incident, mine.id)
        kept = await session.get(Incident, criminal.id)
        assert (redacted.description, redacted.place, redacted.children, redacted.occurred,
                redacted.reporter_seal) == (None, None, None, None, None)
        assert redacted.redacted_at is not None and redacted.attachments == []
        assert (redacted.category, redacted.outcome, redacted.area_id) == (
            "bullying", "handled_by_police", mine.area_id)
        texts = [e.data for e in (await session.execute(select(IncidentEvent).where(
            IncidentEvent.incident_id == mine.id))).scalars()]
        assert not any(QUESTION in json.dumps(d, ensure_ascii=False) or
                       ANSWER in json.dumps(d, ensure_ascii=False) for d in texts)
        assert kept.description == "Một em bị dọa giết qua mạng" and kept.redacted_at is None
        payloads = (await session.execute(select(Outbox.payload).where(
            Outbox.status == OutboxStatus.SENT))).scalars().all()
        assert payloads and all(p == PURGED for p in payloads)
        assert (await session.execute(select(func.count()).select_from(InboxItem).where(
            InboxItem.processed_at.is_not(None)))).scalar_one() == 0
        draft = await session.get(Conversation, (await _account(session, LIAISON_HX)))
        assert draft.flow is None and draft.data == {}
    assert not photo.exists()
    assert await _figures(sessions, clock, settings) == before  # every figure adds up as before

    async with sessions() as session:  # done: nothing more to remove
        again = await retention.plan(session, policy, clock.now())
    assert (again.messages, again.updates, again.drafts, again.cases) == (0, 0, 0, [])
    # The officer still finds the case and its story, without its words.
    [shown] = await officer.say(f"/case {mine.ref}")
    assert mine.ref in shown and "nhà xe" not in shown


async def _account(session, chat_id: int) -> int:
    return (await session.execute(select(Account.id).where(
        Account.external_id == str(chat_id)))).scalar_one()


async def test_retention_show_previews_and_hold_keeps_a_case(
        app, fake_telegram, sessions, clock, people, database_url, monkeypatch,
        capsys) -> None:
    teacher, officer = Chat(fake_telegram, LIAISON_HX), Chat(fake_telegram, OFFICER_HX)
    await file_report(teacher)
    await officer.wait(1)
    async with sessions() as session:
        case = (await session.execute(select(Incident))).scalar_one()
    await _close(officer, case.id, "referred_school")
    await app.worker.settled()
    await app.stop()
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)
    # The command line runs on the real date (two months after the test's clock): the
    # messages are due, the case (closed for less than two years) is not.
    monkeypatch.setenv("SAFESCHOOL_RETENTION_CLOSED_DAYS", "30")
    assert await asyncio.to_thread(main, ["retention", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cases"] == [case.ref] and shown["messages"] > 0
    assert await asyncio.to_thread(main, ["retention", "hold", case.ref.lower()]) == 0
    assert "được giữ nguyên" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["retention", "run", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "redacted 0 closed cases" in out and f"legal hold: {case.ref}" in out
    async with sessions() as session:
        row = await session.get(Incident, case.id)
        assert row.legal_hold and row.description and row.redacted_at is None
        kinds = (await session.execute(select(IncidentEvent.kind).where(
            IncidentEvent.incident_id == case.id))).scalars().all()
        assert "held" in kinds
    assert await asyncio.to_thread(main, ["retention", "hold", "HX-00-NONE"]) == 2
    assert "Không có vụ việc HX-00-NONE" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _keys_back():
    yield  # the command line configures the keys of this process again
    crypto.configure([TEST_DATA_KEY])
    crypto.configure_relay(TEST_RELAY_KEY)


def test_handled_updates_are_kept_at_least_a_day() -> None:
    """A handled update's inbox row is what tells a messenger's redelivery from a new update:
    it may not be deleted sooner than a messenger redelivers."""
    from pydantic import ValidationError

    from bot.core.settings import Settings

    with pytest.raises(ValidationError, match="at least 1"):
        Settings(_env_file=None, retention_inbox_days=0.5)  # type: ignore[call-arg]
    assert Settings(_env_file=None, retention_inbox_days=1).retention_inbox_days == 1  # type: ignore[call-arg]
