"""Nothing lost, nothing late: real `safeschool run` processes under the faults people meet.

Each test is one row of the table in the "Nothing lost" section of the README; its assertion
message states the figure measured. The heaviest run smaller by default; SAFESCHOOL_FAULTS_FULL=1
runs them at full size (CI does both).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.core.messages import Inbound, Outbound
from bot.core.outbox import insert_rows, outbox_rows
from bot.services.directory import import_rows, read_files
from storage import db
from storage.models import Account, Outbox, Person, Priority, Redemption, Role
from tests.auxil.directory import write_directory
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.faults import (
    SECRET_WORDS,
    Launcher,
    PgCluster,
    add_liaisons,
    assert_clean_logs,
    confirmations,
    figure,
    free_port,
    full,
    incidents,
    lost_reports,
    urgent_report,
    urgent_updates,
    wait_until,
)
from tests.auxil.helpers import invite
from tests.auxil.outbox import queue_to_chats
from tests.auxil.people import OFFICER_HX, link_everyone
from tests.conftest import PG_URL

SECRET = "fault-suite-webhook-secret"
APOLOGY = "hệ thống vừa gặp sự cố"


@pytest.fixture
def launcher(database_url: str, fake_telegram: FakeTelegram, tmp_path: Path):
    """Start bot processes on the test database; none outlives the test."""
    spawned = Launcher(database_url, fake_telegram, tmp_path)
    yield spawned
    spawned.close()


async def _polling(fake: FakeTelegram) -> None:
    await wait_until(lambda: any(c.method == "getUpdates" for c in fake.calls), 30,
                     "the bot never started polling")


def _alerts(fake: FakeTelegram) -> list[str]:
    return [t for t in fake.texts(OFFICER_HX) if "KHẨN CẤP" in t]


# ---- a process killed right after it fetched reports -------------------------------------------

@pytest.mark.usefixtures("directory")
async def test_sigkill_right_after_polling_fetched_20_urgent_reports_loses_none(
        launcher: Launcher, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    chats = await add_liaisons(sessions, 20, clock.now())
    first = launcher.start()
    await _polling(fake_telegram)
    for chat in chats:
        urgent_report(fake_telegram, chat)
    await wait_until(lambda: fake_telegram.updates_served >= 2 * len(chats), 30,
                     "the bot did not fetch the reports")
    first.kill()  # right after the fetch: nothing may have been handled yet
    second = launcher.start()
    try:
        await wait_until(lambda: not lost_reports(fake_telegram, chats), 60,
                         "reporters not answered exactly once")
    except AssertionError:
        lost = lost_reports(fake_telegram, chats)
        answers = sorted(len(confirmations(fake_telegram, c)) for c in lost)
        raise AssertionError(f"{len(lost)} of {len(chats)} urgent reports lost or answered "
                             f"twice after a SIGKILL in polling mode (answers: {answers})\n"
                             + launcher.logs()[-4000:]) from None
    figure("SIGKILL after polling fetched 20 urgent reports", "0 lost, each answered once")
    refs = {i.ref for i in await incidents(sessions)}
    assert len(refs) == len(chats), f"{len(refs)} cases for {len(chats)} reports"
    await wait_until(lambda: len(_alerts(fake_telegram)) >= len(chats), 30,
                     "the officer was not alerted of every report")
    assert await second.stop() == 0
    assert_clean_logs(launcher.logs())


# ---- the database blinks -----------------------------------------------------------------------

class Blinker:
    """A database that can blink: a private PostgreSQL cluster, or a locked SQLite file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.cluster: PgCluster | None = None
        if PG_URL:
            self.cluster = PgCluster()
            self.cluster.init()
            self.url = self.cluster.url
        else:
            self.url = f"sqlite+aiosqlite:///{folder / 'blink.db'}"

    def restart(self) -> None:
        """A one-to-three-second blink: pg_ctl restart -m fast, or a 2 s exclusive lock."""
        if self.cluster is not None:
            self.cluster.restart()
        else:
            self._lock(2.0)

    def down(self, seconds: float) -> None:
        """The database away for `seconds`: stopped, or locked by another process."""
        if self.cluster is not None:
            self.cluster.stop()
            time.sleep(seconds)  # the outage itself, in a worker thread
            self.cluster.start()
        else:
            self._lock(seconds)

    def _lock(self, seconds: float) -> None:
        conn = sqlite3.connect(self.url.split("///", 1)[1], timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)  # the lock held: the outage itself, in a worker thread
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def destroy(self) -> None:
        """Remove the private cluster."""
        if self.cluster is not None:
            self.cluster.destroy()


@pytest.fixture
async def blinker(tmp_path: Path, clock):
    """A database of the test's own, migrated, with the directory and everyone linked."""
    blink = Blinker(tmp_path / "blink")
    engine = db.create_engine(blink.url)
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        rows, problems = read_files(write_directory(tmp_path))
        assert not problems
        async with sessions() as session, session.begin():
            await import_rows(session, rows, clock.now())
        await link_everyone(sessions, clock)
        blink.sessions = sessions  # type: ignore[attr-defined]
        yield blink
    finally:
        await engine.dispose()
        blink.destroy()


async def _deliver(url: str, update: dict[str, Any], deadline: float) -> int:
    """Deliver one update like Telegram does: again and again until it is answered 200."""
    tries = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            tries += 1
            try:
                async with http.post(url, json=update, headers={
                        "X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
                    if resp.status == 200:
                        return tries
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)  # Telegram's own redelivery pause, shortened
    raise AssertionError("a webhook delivery was never accepted")


async def _blink_while_reporting(blinker: Blinker, fake: FakeTelegram, tmp_path: Path,
                                 mode: str, reports: int, per_second: float,
                                 fault: Any, what: str) -> None:
    sessions = blinker.sessions  # type: ignore[attr-defined]
    chats = await add_liaisons(sessions, reports, datetime.now(UTC))
    spawn = Launcher(blinker.url, fake, tmp_path / mode)
    (tmp_path / mode).mkdir()
    extra: dict[str, str] = {}
    port = free_port()
    if mode == "webhook":
        extra = {"SAFESCHOOL_TELEGRAM_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
                 "SAFESCHOOL_TELEGRAM_WEBHOOK_SECRET": SECRET,
                 "SAFESCHOOL_HTTP_PORT": str(port)}
    bot = spawn.start(**extra)
    try:
        if mode == "webhook":
            await wait_until(lambda: any(c.method == "setWebhook" for c in fake.calls), 30,
                             "the webhook was never set")
        else:
            await _polling(fake)
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        deliveries: list[asyncio.Task[Any]] = []
        outage: asyncio.Future[Any] | None = None
        for n, chat in enumerate(chats):
            if n == reports // 3:
                outage = asyncio.ensure_future(asyncio.to_thread(fault))
            if mode == "webhook":
                updates = urgent_updates(fake, chat)

                async def one_chat(updates: list[dict[str, Any]] = updates) -> None:
                    deadline = time.monotonic() + 60
                    for update in updates:
                        await _deliver(url, update, deadline)

                deliveries.append(asyncio.ensure_future(one_chat()))
            else:
                urgent_report(fake, chat)
            await asyncio.sleep(1 / per_second)  # reports arrive at their pace
        assert outage is not None
        await outage
        await asyncio.gather(*deliveries)
        try:
            await wait_until(lambda: not lost_reports(fake, chats), 60, "lost")
        except AssertionError:
            lost = lost_reports(fake, chats)
            raise AssertionError(f"{mode}: {len(lost)} of {reports} urgent reports lost or "
                                 f"answered twice while the database blinked") from None
        figure(f"database {what} ({mode}, {reports} reports at {per_second:g}/s)",
               "0 lost, each answered once")
        assert len(await incidents(sessions)) == reports
        assert not [t for c in chats for t in fake.texts(c) if APOLOGY in t], \
            "someone was told 'something went wrong'"
        assert await bot.stop() == 0
    finally:
        spawn.close()
    assert_clean_logs(spawn.logs())


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_database_restart_while_30_urgent_reports_arrive_loses_none(
        blinker: Blinker, fake_telegram: FakeTelegram, tmp_path: Path, mode: str) -> None:
    await _blink_while_reporting(blinker, fake_telegram, tmp_path, mode, reports=30,
                                 per_second=10, fault=blinker.restart,
                                 what="restarted")


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_database_down_6_s_while_40_urgent_reports_arrive_loses_none(
        blinker: Blinker, fake_telegram: FakeTelegram, tmp_path: Path, mode: str) -> None:
    await _blink_while_reporting(blinker, fake_telegram, tmp_path, mode, reports=40,
                                 per_second=5, fault=lambda: blinker.down(6),
                                 what="down 6 s")


# ---- the messenger blinks ----------------------------------------------------------------------

@pytest.mark.usefixtures("directory")
async def test_a_2_second_bot_api_failure_during_a_campaign_delays_an_alert_under_10_s(
        launcher: Launcher, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    [teacher] = await add_liaisons(sessions, 1, clock.now())
    await queue_to_chats(sessions, dict.fromkeys(range(700_000, 703_000), 1),
                         priority=Priority.CAMPAIGN, now=datetime.now(UTC),
                         text="Phòng chống bạo lực học đường")
    bot = launcher.start()
    await wait_until(lambda: fake_telegram.sent_total >= 30, 30, "the campaign never started")
    fake_telegram.fail("sendMessage", 500, times=7, description="Internal Server Error")
    failed = lambda: sum(1 for c in fake_telegram.calls if c.method == "sendMessage"  # noqa: E731
                         and not c.params.get("_ok"))
    await wait_until(lambda: failed() >= 7, 30, "the seven failures never happened")
    reported = time.monotonic()
    urgent_report(fake_telegram, teacher)
    await wait_until(lambda: _alerts(fake_telegram), 60, "no alert at all")
    delay = time.monotonic() - reported
    figure("Bot API 7 x 500 during a campaign, urgent report right after",
           f"first alert {delay:.2f}s after the report")
    assert delay < 10, f"first alert to the officer {delay:.1f}s after the report"
    assert await bot.stop() == 0


@pytest.mark.parametrize("mode", ["500", "refuse", "hang"])
@pytest.mark.usefixtures("directory")
async def test_bot_api_down_then_back_first_alert_within_15_s_of_recovery(
        launcher: Launcher, fake_telegram: FakeTelegram, sessions, clock, mode: str) -> None:
    outage = 60.0 if full() else 8.0
    await link_everyone(sessions, clock)
    bot = launcher.start()
    await _polling(fake_telegram)
    await fake_telegram.go_down(mode)
    async with sessions() as session, session.begin():  # an alert comes in (e.g. from Zalo)
        officer = (await session.execute(select(Account).where(
            Account.external_id == str(OFFICER_HX)))).scalar_one()
        await insert_rows(session, outbox_rows(officer, Outbound("🚨 KHẨN CẤP — vụ việc T-1"),
                                               key="alert:test:1", now=datetime.now(UTC),
                                               priority=Priority.ALERT))
    await asyncio.sleep(outage)  # the outage itself
    await fake_telegram.come_back()
    back = time.monotonic()
    await wait_until(lambda: _alerts(fake_telegram), 60, "the alert never went out")
    delay = time.monotonic() - back
    figure(f"Bot API down {outage:g}s ({mode}) then back", f"first alert {delay:.2f}s after")
    assert delay < 15, f"{mode}: first alert {delay:.1f}s after a {outage:g}s outage ended"
    assert len(_alerts(fake_telegram)) == 1
    assert await bot.stop() == 0


# ---- a flood in three chats --------------------------------------------------------------------

async def test_three_chats_with_100_queued_replies_never_delay_a_new_persons_help(
        launcher: Launcher, fake_telegram: FakeTelegram, sessions) -> None:
    await queue_to_chats(sessions, {800: 110, 801: 110, 802: 110}, priority=Priority.REPLY,
                         now=datetime.now(UTC), text="trả lời")
    # Production pacing: about one message a second per chat.
    bot = launcher.start(SAFESCHOOL_TELEGRAM_CHAT_BURST="1")
    await _polling(fake_telegram)
    await wait_until(lambda: all(fake_telegram.texts(800 + n) for n in range(3)), 30,
                     "the queued replies never started")
    asked = time.monotonic()
    fake_telegram.user_message(990, "/help")
    await wait_until(lambda: fake_telegram.texts(990), 60, "/help never answered")
    delay = time.monotonic() - asked
    figure("3 chats x 110 queued replies, a newcomer's /help", f"answered in {delay:.2f}s")
    assert delay < 2, f"/help answered after {delay:.1f}s behind 3 chats of 110 queued replies"
    per_chat = lambda: [len(fake_telegram.texts(800 + n)) for n in range(3)]  # noqa: E731
    try:  # paced at about one a second each, side by side
        await wait_until(lambda: min(per_chat()) >= 4, 20, "starved")
    except AssertionError:
        raise AssertionError(f"one chat's queue starved the others: {per_chat()}") from None
    assert await bot.stop() == 0


# ---- unusual updates ---------------------------------------------------------------------------

def _unusual_updates(fake: FakeTelegram, liaison: int, count: int) -> None:
    """Queue count updates that are odd, broken or hostile, and a few that are fine."""
    rng = random.Random(20261123)
    private = {"id": liaison, "type": "private", "first_name": "T"}
    user = {"id": liaison, "is_bot": False, "first_name": "T"}
    forged = ["", ":", "::", "case", "case:", "case:ack", "case:ack:²", "case:ack:①",
              "case:ack:99999999999999999999999", "case:view:-1", "case:reassign:1:x",
              "case:reassign:1:99999999999999999999", "report:school", "report:school:²",
              "lang", "lang:", "lang:xx", "menu", "menu:", "alerts:", "topics:x:y",
              "camp:x", "campaign:show:²", "link", "link:", "a" * 64, "\ud800", "report:when",
              "report:cat:" + "x" * 40, "consent:", "consent:yes:²"]
    texts = ["2", "²", "①", "99999999999999999999999", "/offduty 99999999999999h",
             "/offduty 31/02/2026", "/case 99999999999999999999", "/case ²", "/cases x",
             "/start " + "A" * 500, "\ud800 lone surrogate", "nul\x00byte", "x" * 100_000,
             "/link 99999999999999999999", "/report", "/cancel", "/alerts", "/mycases",
             "/topics", "/language", f"Bé {SECRET_WORDS[0]} có {SECRET_WORDS[1]} ở tay, "
             f"mẹ gọi {SECRET_WORDS[2]}", "/campaign", "/stop", "/start", "/me", "/help"]
    shapes = [
        lambda: {"message": {"message_id": 1, "date": 0, "chat": private, "from": user,
                             "text": rng.choice(texts),
                             "entities": [{"type": "bot_command", "offset": 0, "length": 4}]}},
        lambda: {"message": {"message_id": 1, "date": 0, "chat": private, "from": user,
                             "text": rng.choice(texts)}},
        lambda: {"callback_query": {"id": "q", "from": user, "chat_instance": "1",
                                    "data": rng.choice(forged),
                                    "message": {"message_id": 1, "date": 0, "chat": private}}},
        lambda: {"message": {"message_id": 1, "date": 0,
                             "chat": {"id": -100123, "type": "supergroup", "title": "G"},
                             "from": user, "text": "/report"}},
        lambda: {"channel_post": {"message_id": 1, "date": 0,
                                  "chat": {"id": -100999, "type": "channel"}, "text": "hi"}},
        lambda: {"my_chat_member": {"chat": private, "from": user, "date": 0,
                                    "old_chat_member": {"status": "member", "user": user},
                                    "new_chat_member": {"status": rng.choice(
                                        ["kicked", "member"]), "user": user,
                                        "until_date": 0}}},
        lambda: {"chat_member": {"chat": {"id": -5, "type": "group"}, "date": 0}},
        lambda: {"edited_message": {"message_id": 1, "date": 0, "chat": private,
                                    "from": user, "text": "sửa"}},
        lambda: {"message": {"message_id": 1, "date": 0, "chat": private, "from": user,
                             "sticker": {"file_id": "s", "file_unique_id": "s", "width": 1,
                                         "height": 1, "is_animated": False,
                                         "is_video": False, "type": "regular"}}},
        lambda: {"message": {"message_id": 1, "date": 0, "chat": private, "from": user,
                             "location": {"latitude": 999, "longitude": "x"}}},
        # Schema-breaking: the library cannot parse these at all.
        lambda: {"message": "not an object"},
        lambda: {"message": {"chat": "x"}},
        lambda: {"message": [1, 2, 3]},
        lambda: {"callback_query": {"id": 5}},
        lambda: {"message": {"message_id": "x", "date": "y", "chat": {"id": None}}},
        lambda: {"my_chat_member": {"chat": private}},
    ]
    for n in range(count):
        fake.queue_update(shapes[n % len(shapes)]())


@pytest.mark.usefixtures("directory")
async def test_609_unusual_updates_cause_no_traceback_and_never_wedge_polling(
        launcher: Launcher, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    [liaison] = await add_liaisons(sessions, 1, clock.now())
    bot = launcher.start(log_level="DEBUG")  # no content in the logs at any level
    await _polling(fake_telegram)
    _unusual_updates(fake_telegram, liaison, 609)
    await wait_until(lambda: fake_telegram.pending_updates() == 0, 120,
                     "polling is wedged: unusual updates are never confirmed")
    fake_telegram.user_message(991, "/help")  # an ordinary person right after
    await wait_until(lambda: fake_telegram.texts(991), 30, "/help not answered after the fuzz")
    assert await bot.stop() == 0
    logs = launcher.logs()
    tracebacks = logs.count("Traceback")
    assert tracebacks == 0, f"{tracebacks} tracebacks from 609 unusual updates:\n{logs[-3000:]}"
    figure("609 unusual updates", f"{tracebacks} tracebacks, polling not wedged")
    apologies = sum(APOLOGY in t for t in fake_telegram.texts(liaison))
    assert apologies == 0, f"{apologies} 'something went wrong' answers"
    assert_clean_logs(logs)


# ---- one person-bound code, two accounts at once ----------------------------------------------

@pytest.mark.usefixtures("directory")
async def test_two_accounts_racing_for_one_person_bound_code_register_one_officer(
        app, sessions, clock) -> None:
    async with sessions() as session:
        officer = (await session.execute(select(Person).where(
            Person.name == "Lê Văn An"))).scalar_one()
    code = await invite(sessions, clock, Role.OFFICER, area_code="HX",
                        person_phone="0912345678", duty="primary")
    attempts = [Inbound("telegram", str(960 + n), f"race-{n}", text=code) for n in range(2)]
    await asyncio.gather(*(app.dispatcher.handle(i) for i in attempts))
    async with sessions() as session:
        linked = (await session.execute(select(func.count()).select_from(Account).where(
            Account.person_id == officer.id))).scalar_one()
        redeemed = (await session.execute(select(func.count()).select_from(Redemption)))\
            .scalar_one()
    figure("two accounts race for one person-bound code", f"{linked} officer account(s)")
    assert (linked, redeemed) == (1, 1), f"{linked} accounts became the officer"


# ---- a person who floods the bot ---------------------------------------------------------------

async def test_a_person_who_floods_the_bot_gets_every_answer_and_one_polite_notice(
        app, fake_telegram: FakeTelegram) -> None:
    flooder, other = 970, 971
    for _ in range(45):
        fake_telegram.user_message(flooder, "/help")
    fake_telegram.user_message(other, "/help")
    notice = "được gửi rất nhanh"
    await wait_until(lambda: len([t for t in fake_telegram.texts(flooder)
                                  if notice not in t]) >= 45, 60,
                     "not every message of the flood was answered")
    notices = [t for t in fake_telegram.texts(flooder) if notice in t]
    figure("45 messages at once from one person", f"45 answers, {len(notices)} notice(s)")
    assert len(notices) == 1, f"{len(notices)} flood notices"
    assert fake_telegram.texts(other) and not [t for t in fake_telegram.texts(other)
                                               if notice in t]


# ---- a person who blocks the bot ---------------------------------------------------------------

@pytest.mark.usefixtures("directory")
async def test_an_officer_who_blocks_the_bot_is_marked_blocked_at_once_and_back_when_unblocked(
        app, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    officer = {"id": OFFICER_HX, "is_bot": False, "first_name": "An"}

    def membership(status: str) -> None:
        fake_telegram.queue_update({"my_chat_member": {
            "chat": {"id": OFFICER_HX, "type": "private", "first_name": "An"},
            "from": officer, "date": 0,
            "old_chat_member": {"status": "member", "user": officer},
            "new_chat_member": {"status": status, "user": officer, "until_date": 0}}})

    async def blocked() -> bool:
        async with sessions() as session:
            return (await session.execute(select(Account.blocked_at).where(
                Account.external_id == str(OFFICER_HX)))).scalar_one() is not None

    membership("kicked")
    await wait_until(blocked, 10, "the account was not marked blocked")
    membership("member")

    async def unblocked() -> bool:
        return not await blocked()

    await wait_until(unblocked, 10, "the account stayed blocked after the person came back")
    async with sessions() as session:  # an answer would be queued in the same transaction
        queued = (await session.execute(select(func.count()).select_from(Outbox).where(
            Outbox.chat_id == str(OFFICER_HX)))).scalar_one()
    assert queued == 0, f"{queued} answer(s) to a membership change"
