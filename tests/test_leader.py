"""Several instances, one database (#15, part 1): three `safeschool run` processes on
PostgreSQL elect one leader (it alone polls Telegram and runs the clocks); the leader killed
with SIGKILL mid-way, another leads within SAFESCHOOL_LEADER_TIMEOUT and every report is
still answered and alerted (what the dead leader had sent but not recorded may go twice,
within a stated bound). On SQLite a second process refuses to start."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.app import App
from bot.cli.keys import KEY_SETTINGS
from bot.core.messages import Inbound, inbound_to_payload
from bot.core.worker import ALERT_LANE
from bot.services import campaigns, escalation, periods
from bot.services.directory import import_rows, read_files
from storage import db
from storage.models import (
    Account,
    Area,
    Campaign,
    InboxItem,
    Outbox,
    OutboxStatus,
    Priority,
    ReachCount,
)
from tests.auxil.audience import add_parents
from tests.auxil.console import file_case
from tests.auxil.directory import write_directory
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.faults import (
    Launcher,
    add_liaisons,
    confirmations,
    figure,
    full,
    incidents,
    unanswered,
    urgent_report,
    wait_until,
)
from tests.auxil.helpers import count
from tests.auxil.people import CHIEF_QH, LIAISON_HX, OFFICER_HX, Chat, link_everyone

# The suite's PostgreSQL (the test makes a database of its own there); several instances need
# it: on SQLite a second instance refuses to start (the last test below).
PG = os.environ.get("SAFESCHOOL_TEST_DATABASE_URL", "")
needs_postgresql = pytest.mark.skipif(
    not PG.startswith("postgres"),
    reason="several instances need PostgreSQL: run with SAFESCHOOL_TEST_DATABASE_URL="
           "postgresql+asyncpg://… (CI does)")
LEADS = "This instance leads"
TIMEOUT = 6.0  # SAFESCHOOL_LEADER_TIMEOUT for the test
CONCURRENCY = 8  # sends in flight per process: what a SIGKILL may leave sent but unrecorded
PARENT_BASE = 700_000  # the campaign's parents' chat ids


async def _admin(sql: str) -> None:
    url = make_url(PG)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                 database=url.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _why(sessions, fake: FakeTelegram, chats: list[int], launcher: Launcher) -> str:
    """What became of the reports nobody answered: what each reporter was sent, their
    inbound updates and outbox rows, and the processes' last log lines."""
    lost = unanswered(fake, chats)
    lines = [f"{len(lost)} of {len(chats)} reports never answered"]
    async with sessions() as session:
        inbox = list((await session.execute(select(InboxItem))).scalars())
        for chat in lost[:3]:
            lines.append(f"chat {chat}: was sent {fake.texts(chat)!r}")
            lines.extend(f"  inbox {item.id} {item.event_id} processed={item.processed_at} "
                         f"{str(item.inbound)[:160]}"
                         for item in inbox if str(chat) in str(item.inbound))
            lines.extend(f"  outbox {row.id} {row.status} p{row.priority} "
                         f"attempts={row.attempts} lease={row.lease_until} {row.last_error}"
                         for row in (await session.execute(
                             select(Outbox).where(Outbox.chat_id == str(chat)))).scalars())
    return "\n".join(lines) + "\n" + launcher.logs()[-6000:]


@needs_postgresql
async def test_three_instances_elect_one_leader_and_fail_over_after_sigkill(
        fake_telegram: FakeTelegram, clock, tmp_path: Path) -> None:
    """Three processes, urgent reports from many teachers, a campaign to every parent of a
    school, the leader SIGKILLed while both are in flight: a new leader within the timeout,
    every report answered, every alert and campaign message delivered, duplicates
    within the bound, each escalation step sent once."""
    reports, parents = (500, 10_000) if full() else (60, 2_000)
    name = f"leader_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    launcher = Launcher(url, fake_telegram, tmp_path, env={
        "SAFESCHOOL_LEADER_TIMEOUT": str(TIMEOUT), "SAFESCHOOL_CASE_TICK_SECONDS": "1",
        "SAFESCHOOL_TELEGRAM_RATE_PER_SECOND": "200", "SAFESCHOOL_TELEGRAM_CHAT_BURST": "50",
        "SAFESCHOOL_OUTBOX_CONCURRENCY": str(CONCURRENCY)})
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        rows, problems = read_files(write_directory(tmp_path))
        assert not problems
        now = clock.now()
        async with sessions() as session, session.begin():
            await import_rows(session, rows, now)
        await link_everyone(sessions, clock)
        chats = await add_liaisons(sessions, reports, now)
        async with sessions() as session, session.begin():
            await add_parents(session, "THCS-HX", parents, now, first_chat=PARENT_BASE)
            # Quick steps, so the chief's step comes while the test runs (and the failover
            # happens in between for the first cases).
            area = (await session.execute(select(Area).where(Area.code == "TH"))).scalar_one()
            await escalation.set_policy(session, area, escalation.parse({
                "urgent": {"steps": [{"after": "0s", "notify": ["primary"]},
                                     {"after": "15s", "notify": ["chief"]}],
                           "repeat_last": 0}}), now)
        bots = [launcher.start() for _ in range(3)]

        def leaders() -> list[int]:
            return [n for n, bot in enumerate(bots) if LEADS in bot.log()]

        await wait_until(lambda: len(leaders()) >= 1, 60, "nobody leads")
        [first] = leaders()  # one, and only one
        async with sessions() as session, session.begin():
            area_ids = [(await session.execute(select(Area.id).where(Area.code == "HX")))
                        .scalar_one()]
            campaign = Campaign(name="Phòng chống bạo lực học đường", roles=["parent"],
                                content_ids=["whom_to_call"], schedule="once",
                                starts_at=datetime.now(UTC), runs_done=0,
                                created_at=datetime.now(UTC), status="draft",
                                area_ids=area_ids)
            session.add(campaign)
            await session.flush()
            campaigns.activate(campaign, datetime.now(UTC), ZoneInfo("Asia/Ho_Chi_Minh"))
        half = len(chats) // 2
        for chat in chats[:half]:
            urgent_report(fake_telegram, chat)
        await wait_until(lambda: fake_telegram.sent_total > parents // 4, 120,
                         "the campaign did not start")

        bots[first].kill()  # with the campaign and the reports in flight
        killed = time.monotonic()
        await wait_until(lambda: len(leaders()) >= 2, TIMEOUT + 10, "nobody took over")
        took = time.monotonic() - killed
        assert took < TIMEOUT, f"a new leader after {took:.1f} s"
        assert len(leaders()) == 2  # the dead one and exactly one successor
        figure("a new leader after the leader's SIGKILL", f"{took:.1f} s (timeout {TIMEOUT:g} s)")

        for chat in chats[half:]:
            urgent_report(fake_telegram, chat)
        # Every reporter told at least once; a confirmation the killed leader had sent but not
        # recorded goes out again, and counts against the duplicate bound below.
        try:
            await wait_until(lambda: not unanswered(fake_telegram, chats), 180,
                             "a report was never answered")
        except AssertionError as missing:
            raise AssertionError(await _why(sessions, fake_telegram, chats, launcher)) \
                from missing
        family = range(PARENT_BASE, PARENT_BASE + parents)
        await wait_until(lambda: all(fake_telegram.sent_per_chat.get(c) for c in family), 300,
                         "a campaign message was not delivered")
        refs = [i.ref for i in await incidents(sessions)]
        assert len(refs) == len(chats)

        def escalated(ref: str) -> int:
            return sum(ref in t and "CHƯA AI TIẾP NHẬN" in t
                       for t in fake_telegram.texts(CHIEF_QH))

        # One chief, one officer: Telegram lets a chat receive one message a second, so
        # their queues take about a second a case.
        drain = max(120.0, 1.3 * len(refs))
        await wait_until(lambda: all(escalated(r) for r in refs), drain,
                         "a case never reached the chief")
        await wait_until(lambda: all(any(r in t and "KHẨN CẤP" in t
                                         for t in fake_telegram.texts(OFFICER_HX))
                                     for r in refs), drain, "an alert never reached the officer")
        alerted = fake_telegram.texts(OFFICER_HX)
        extra_alerts = sum(max(0, sum(r in t and "KHẨN CẤP" in t for t in alerted) - 1)
                           for r in refs)
        extra_steps = sum(escalated(r) - 1 for r in refs)
        extra_campaign = sum(fake_telegram.sent_per_chat[c] - 1 for c in family)
        extra_answers = sum(len(confirmations(fake_telegram, c)) - 1 for c in chats)
        # The bound: what the killed process had sent but not yet recorded (its sending
        # slots, and the alert lane's own).
        extra = extra_alerts + extra_steps + extra_campaign + extra_answers
        assert extra <= CONCURRENCY + ALERT_LANE, \
            (extra_alerts, extra_steps, extra_campaign, extra_answers)
        figure(f"3 instances, {reports} urgent reports, a {parents:,}-parent campaign, "
               "the leader killed",
               f"0 lost; {extra} duplicate(s) (bound {CONCURRENCY + ALERT_LANE})")
        for n, bot in enumerate(bots):
            if n != first:
                assert await bot.stop() == 0
    finally:
        launcher.close()
        await engine.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_second_process_on_one_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    env.update(SAFESCHOOL_DATABASE_URL=f"sqlite:///{tmp_path / 'one.db'}",
               SAFESCHOOL_HTTP_PORT="0", SAFESCHOOL_MEDIA_DIR=str(tmp_path / "media"))
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert first.stdout is not None
    try:
        while b"/chat/" not in (line := await asyncio.wait_for(first.stdout.readline(), 60)) \
                or b"Web chat at" in line:
            assert line, "the first process ended"
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2
        assert err.decode().strip().startswith(
            "safeschool: một tiến trình SafeSchool Link khác đang chạy trên cơ sở dữ liệu "
            "SQLite"), err.decode()
        assert first.returncode is None  # the first one runs on, untouched
    finally:
        first.terminate()
        assert await asyncio.wait_for(first.wait(), 30) == 0


async def test_the_clock_jobs_run_on_the_leader_only(app, directory, sessions, clock,
                                                     fake_telegram) -> None:
    await link_everyone(sessions, clock)
    await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    chief = Chat(fake_telegram, CHIEF_QH)
    seen = chief.mark()
    case_clock = app.scheduler.get_job("case-clock").func
    app.leadership._set(False)  # another instance leads now
    clock.advance(timedelta(minutes=11))  # past the urgent policy's step to the chief
    assert await case_clock() is None
    assert await count(sessions, Outbox, Outbox.chat_id == str(CHIEF_QH)) == 0
    app.leadership._set(True)
    done = await case_clock()
    assert done and any(done.values())
    [told] = await chief.since(seen)
    assert "CHƯA AI TIẾP NHẬN" in told


async def test_the_leader_counts_the_awareness_messages_sent(app, directory, sessions,
                                                             clock) -> None:
    """The outreach clock (every minute) reads sent awareness messages into the kept
    counts, on the leader only."""
    await link_everyone(sessions, clock)
    now = clock.now()
    async with sessions() as session, session.begin():
        account = (await session.execute(select(Account).where(
            Account.external_id == str(LIAISON_HX)))).scalar_one()
        area = (await session.execute(select(Area.id).where(Area.code == "HX"))).scalar_one()
        session.add(Outbox(idempotency_key="campaign:leader", account_id=account.id,
                           channel="telegram", chat_id=str(LIAISON_HX),
                           priority=Priority.CAMPAIGN, payload={"text": "Tuyên truyền"},
                           status=OutboxStatus.SENT, attempts=1, next_attempt_at=now,
                           created_at=now, sent_at=now, campaign_run_id=1, area_id=area))
    outreach_clock = app.scheduler.get_job("outreach").func
    app.leadership._set(False)  # another instance leads now
    assert await outreach_clock() is None
    assert await count(sessions, ReachCount) == 0
    app.leadership._set(True)
    assert await outreach_clock() == 1
    async with sessions() as session:
        year = (await session.execute(select(ReachCount.people).where(
            ReachCount.period == str(periods.reporting_year_of(
                now.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).date())),
            ReachCount.role == "liaison"))).scalar_one()
    assert year == 1


async def _left_by_a_dead_instance(sessions, received_at: datetime, chat: int) -> None:
    """An update another instance stored (and told the messenger it had), then died."""
    inbound = Inbound(channel="telegram", external_id=str(chat), event_id=f"dead-{chat}",
                      command="help")
    async with sessions() as session, session.begin():
        session.add(InboxItem(channel="telegram", event_id=inbound.event_id,
                              inbound=inbound_to_payload(inbound), received_at=received_at))


async def test_an_instance_that_becomes_leader_answers_what_the_dead_leader_stored(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    # The poller stores updates and confirms them to Telegram; a leader killed before it
    # handled them leaves them to the next leader, who starts no process to find them.
    await _left_by_a_dead_instance(sessions, clock.now(), 811)
    app.leadership.on_change(True)  # what Leadership calls when this instance takes over
    texts = await fake_telegram.wait_texts(811, 1)
    assert "111" in texts[0]  # /help's answer


async def test_the_leader_answers_an_update_left_unhandled_too_long(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    # In webhook mode every instance takes updates in; one that dies leaves what it stored.
    await _left_by_a_dead_instance(sessions, clock.now(), 812)
    clock.advance(2 * app.settings.leader_timeout + 1)
    await app.case_tick()  # the leader's clock
    texts = await fake_telegram.wait_texts(812, 1)
    assert "111" in texts[0]


async def test_a_clean_stop_hands_leadership_on_without_a_warning(
        settings, clock, caplog: pytest.LogCaptureFixture) -> None:
    # An operator reads warnings as something to look into; stopping on purpose is not.
    application = App(settings, clock)
    await application.start()
    assert application.leadership.is_leader
    with caplog.at_level(logging.INFO, logger="storage.leader"):
        await application.stop()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "storage.leader"]
    assert said == [(logging.INFO, "This instance hands leadership on as it stops")]
