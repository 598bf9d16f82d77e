"""Nothing lost: outages, blocked officers, undeliverable messages, SIGKILL and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli.keys import KEY_SETTINGS
from bot.core.clock import FakeClock
from bot.core.i18n import Translator
from bot.core.messages import Outbound
from bot.core.outbox import enqueue
from bot.core.worker import ALERT_LANE
from storage.models import Account, Area, Incident, Outbox, OutboxStatus, Person, Priority, Role
from storage.models import RoleAssignment as Assignment
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import eventually
from tests.auxil.people import BACKUP_HX, LIAISON_HX, OFFICER_HX, Chat, link_everyone
from tests.conftest import make_settings
from tests.test_escalation import escalations, the_incident
from tests.test_reports import file_report


async def _rows(sessions) -> list[Outbox]:
    async with sessions() as session:
        return list((await session.execute(select(Outbox).order_by(Outbox.id))).scalars())


async def _queue(sessions, clock, chats: list[tuple[int, int]], now=None) -> None:
    """Queue one message per (chat id, priority), each to its own account."""
    now = now or clock.now()
    async with sessions() as session, session.begin():
        for chat_id, priority in chats:
            account = Account(channel="telegram", external_id=str(chat_id), created_at=now,
                              code_failures=0)
            session.add(account)
            await session.flush()
            await enqueue(session, account, Outbound(f"tin {chat_id} ưu tiên {priority}"),
                          key=f"test:{chat_id}", now=now, priority=priority)


async def test_an_hour_long_outage_loses_nothing_and_drains_in_priority_order(
        database_url, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    app = App(make_settings(database_url, fake_telegram, outbox_concurrency=1), clock)
    clock.on_advance(app.worker.wake)
    fake_telegram.outage()
    await app.start()
    try:
        await _queue(sessions, clock, [(1001, Priority.CAMPAIGN), (1002, Priority.NOTICE),
                                       (1003, Priority.ALERT), (1004, Priority.CAMPAIGN),
                                       (1005, Priority.REPLY), (1006, Priority.ALERT)])
        app.worker.wake()
        for probe in range(1, 14):  # an hour, in five-minute steps

            async def failure_recorded(n: int = probe) -> bool:
                rows = await _rows(sessions)
                return sum(r.attempts for r in rows) == n and \
                    all(r.status == OutboxStatus.PENDING for r in rows)

            await eventually(failure_recorded)
            clock.advance(timedelta(minutes=5))
        await app.worker.settled()
        assert fake_telegram.sent() == []
        fake_telegram.restore()
        clock.advance(timedelta(minutes=5))

        async def drained() -> bool:
            return all(r.status == OutboxStatus.SENT for r in await _rows(sessions))

        await eventually(drained)
        delivered = [int(p["chat_id"]) for p in fake_telegram.sent()]
        assert sorted(delivered) == [1001, 1002, 1003, 1004, 1005, 1006]  # no loss, no double
        assert delivered == [1003, 1006, 1005, 1002, 1001, 1004]  # alerts first, campaign last
    finally:
        await app.stop()


@pytest.mark.usefixtures("directory")
async def test_officer_who_blocked_the_bot_is_skipped_and_the_case_escalates_at_once(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await link_everyone(sessions, clock)
    fake_telegram.fail("sendMessage", 403, description="Forbidden: bot was blocked by the user",
                       chat_id=OFFICER_HX)
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)

    async def officer_unreachable() -> bool:
        async with sessions() as session:
            account = (await session.execute(select(Account).where(
                Account.external_id == str(OFFICER_HX)))).scalar_one()
            return account.blocked_at is not None

    await eventually(officer_unreachable)
    await app.tick()  # no need to wait the 60 minutes: nobody can acknowledge
    [to_backup] = await escalations(sessions, BACKUP_HX)
    assert incident.ref in to_backup
    await file_report(Chat(fake_telegram, LIAISON_HX), category="other")
    async with sessions() as session:
        second = (await session.execute(select(Incident).order_by(Incident.id.desc())))\
            .scalars().first()
    assert second.assigned_person_id != incident.assigned_person_id  # routing skips them


@pytest.mark.usefixtures("directory")
async def test_undeliverable_messages_are_reported_to_the_admins_once(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    now = clock.now()
    async with sessions() as session, session.begin():
        top = (await session.execute(select(Area).where(Area.code == "TH"))).scalar_one()
        admin = Person(name="Ban Chỉ đạo 138", created_at=now)
        session.add(admin)
        await session.flush()
        session.add_all([Assignment(person_id=admin.id, role=Role.ADMIN, area_id=top.id,
                                    created_at=now),
                         Account(channel="telegram", external_id="950", person_id=admin.id,
                                 created_at=now, code_failures=0)])
    fake_telegram.fail("sendMessage", 400, times=2, description="Bad Request: chat not found")
    await _queue(sessions, clock, [(1101, Priority.ALERT), (1102, Priority.NOTICE)])
    app.worker.wake()

    async def both_dead() -> bool:
        rows = await _rows(sessions)
        return [r.status for r in rows] == [OutboxStatus.DEAD, OutboxStatus.DEAD]

    await eventually(both_dead)
    assert (await app.tick())["dead"] == 2
    [report] = await Chat(fake_telegram, 950).wait(1)
    assert "2 tin nhắn không gửi được" in report and "1 cảnh báo" in report
    assert (await app.tick())["dead"] == 0
    clock.advance(timedelta(days=1))
    assert (await app.tick())["dead"] == 0


# ---- a real process, killed ------------------------------------------------------------------

def _spawn(database_url: str, fake: FakeTelegram, workdir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    env.update({
        "SAFESCHOOL_DATABASE_URL": database_url,
        "SAFESCHOOL_TELEGRAM_TOKEN": fake.token,
        "SAFESCHOOL_TELEGRAM_API_URL": fake.api_url,
        "SAFESCHOOL_TELEGRAM_POLL_TIMEOUT": "1",
        "SAFESCHOOL_HTTP_PORT": "0",
        "SAFESCHOOL_TELEGRAM_RATE_PER_SECOND": "5000",
        "SAFESCHOOL_OUTBOX_CONCURRENCY": str(CONCURRENCY),
        "SAFESCHOOL_OUTBOX_LEASE_SECONDS": "2",
    })
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--log-level", "WARNING"],
                            env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


CONCURRENCY = 8
ALERTS = 642  # the figure of the run that once lost 321 on PostgreSQL


async def _stop(process: subprocess.Popen, sig: int) -> int:
    process.send_signal(sig)
    return await asyncio.to_thread(process.wait, 30)


async def test_sigkill_in_the_middle_of_642_alerts_loses_none(
        database_url, fake_telegram: FakeTelegram, sessions, tmp_path) -> None:
    from datetime import UTC, datetime

    fake_telegram.send_latency = 0.01
    await _queue(sessions, None, [(2000 + n, Priority.ALERT) for n in range(ALERTS)],
                 now=datetime.now(UTC))
    first = _spawn(database_url, fake_telegram, tmp_path)
    try:
        await fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= 100, timeout=60)
        os.kill(first.pid, signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
    assert len(fake_telegram.sent()) < ALERTS  # it really died mid-way
    second = _spawn(database_url, fake_telegram, tmp_path)
    try:
        await fake_telegram.wait_for(
            lambda: len({p["chat_id"] for p in fake_telegram.sent()}) >= ALERTS, timeout=90)

        async def all_recorded() -> bool:
            return all(r.status == OutboxStatus.SENT for r in await _rows(sessions))

        await eventually(all_recorded, timeout=30)
        assert await _stop(second, signal.SIGTERM) == 0
    finally:
        if second.poll() is None:
            second.kill()
    counts = Counter(p["chat_id"] for p in fake_telegram.sent())
    assert len(counts) == ALERTS
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= CONCURRENCY + ALERT_LANE  # at most the sends in flight at the kill


async def test_sigterm_drains_in_flight_sends_and_exits_0(
        database_url, fake_telegram: FakeTelegram, sessions, tmp_path) -> None:
    from datetime import UTC, datetime

    fake_telegram.send_latency = 0.05
    await _queue(sessions, None, [(3000 + n, Priority.NOTICE) for n in range(200)],
                 now=datetime.now(UTC))
    process = _spawn(database_url, fake_telegram, tmp_path)
    try:
        await fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= 20, timeout=60)
        assert await _stop(process, signal.SIGTERM) == 0
    finally:
        if process.poll() is None:
            process.kill()
    rows = await _rows(sessions)
    assert not [r for r in rows if r.status == OutboxStatus.SENDING]  # finished or returned
    sent_rows = {r.chat_id for r in rows if r.status == OutboxStatus.SENT}
    delivered = {str(p["chat_id"]) for p in fake_telegram.sent()}
    assert sent_rows == delivered  # what is recorded as sent is exactly what went out
    assert len(rows) == 200


async def test_a_burst_of_many_chats_is_handled_together_and_one_failure_spoils_none(
        database_url, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    """Thirty people write at once: their updates share transactions (one commit for many),
    yet when the handler fails for one of them, everyone else still gets their answer once
    and that one person the apology."""
    app = App(make_settings(database_url, fake_telegram), clock)
    router = app.dispatcher.router
    answer_help = router.commands["help"]
    broken = 7013

    async def help_failing_for_one(ctx) -> None:
        if ctx.inbound.external_id == str(broken):
            raise RuntimeError("a handler's bug")
        await answer_help(ctx)

    router.commands["help"] = help_failing_for_one
    shared: list[int] = []
    handle_all = app.dispatcher._handle_all

    async def counting(inbounds, flooding):
        shared.append(len(inbounds))
        return await handle_all(inbounds, flooding)

    app.dispatcher._handle_all = counting
    users = list(range(7001, 7031))
    for user in users:  # queued before the bot polls: one getUpdates batch holds them all
        fake_telegram.user_message(user, "/help")
    await app.start()
    try:
        await eventually(lambda: all(fake_telegram.texts(u) for u in users))
        await app.worker.settled()
        apology = Translator("vi")("error.generic")
        assert fake_telegram.texts(broken) == [apology]
        for user in users:
            if user != broken:
                texts = fake_telegram.texts(user)
                assert len(texts) == 1 and texts[0] != apology, (user, texts)
        assert max(shared, default=0) > 1, f"no update shared a transaction: {shared}"
    finally:
        await app.stop()
