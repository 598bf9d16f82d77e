"""The outbox and its worker: retries, limits, blocked chats, no duplicates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.messages import Inbound, inbound_to_payload
from storage.models import Account, InboxItem, Outbox, OutboxStatus
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import account, eventually


async def _rows(sessions) -> list[Outbox]:
    """The messages queued (not the chats' command menus, which ride the outbox too)."""
    async with sessions() as session:
        return list((await session.execute(
            select(Outbox).where(Outbox.idempotency_key.not_like("commands:%"))
            .order_by(Outbox.id))).scalars())


def _attempts(fake: FakeTelegram, chat_id: int) -> int:
    return sum(1 for c in fake.calls
               if c.method == "sendMessage" and int(c.params["chat_id"]) == chat_id)


async def test_reply_after_429_is_delivered_once_after_retry_after(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    fake_telegram.fail("sendMessage", 429, retry_after=30, description="Too Many Requests")
    fake_telegram.user_message(701, "/help")
    await fake_telegram.wait_for(lambda: _attempts(fake_telegram, 701) == 1)
    [row] = await _rows(sessions)
    assert row.status in (OutboxStatus.SENDING, OutboxStatus.PENDING)
    # Telegram said 30 s: nothing goes out before that, whatever else happens.
    clock.advance(10)
    fake_telegram.user_message(702, "/help")  # another chat: the whole bot is paused
    clock.advance(19)
    await app.worker.settled()  # the worker looked at both rows and held them
    assert fake_telegram.texts(701) == [] and fake_telegram.texts(702) == []
    clock.advance(2)
    await fake_telegram.wait_texts(701, 1)
    await fake_telegram.wait_texts(702, 1)

    async def all_sent() -> bool:
        return [r.status for r in await _rows(sessions)] == ["sent", "sent"]

    await eventually(all_sent)
    assert len(fake_telegram.texts(701)) == 1
    assert all(r.provider_message_id for r in await _rows(sessions))


async def test_server_errors_are_retried_with_backoff_until_delivered(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    fake_telegram.fail("sendMessage", 500, times=2, description="Internal Server Error")
    fake_telegram.user_message(703, "/help")

    def waiting_after(attempts: int):
        async def retry_recorded() -> bool:
            rows = await _rows(sessions)
            return [(r.status, r.attempts) for r in rows] == [(OutboxStatus.PENDING, attempts)]
        return retry_recorded

    await eventually(waiting_after(1))
    clock.advance(3)  # first backoff is about 2 s
    await eventually(waiting_after(2))
    assert _attempts(fake_telegram, 703) == 2
    clock.advance(6)  # second about 4 s
    texts = await fake_telegram.wait_texts(703, 1)
    assert len(texts) == 1 and _attempts(fake_telegram, 703) == 3

    async def sent() -> bool:
        return (await _rows(sessions))[0].status == OutboxStatus.SENT

    await eventually(sent)
    clock.advance(3600)
    await app.worker.settled()
    [row] = await _rows(sessions)
    assert row.attempts == 3
    assert len(fake_telegram.texts(703)) == 1  # never sent twice


async def test_blocked_bot_marks_the_account_unreachable_and_stops_retrying(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    fake_telegram.fail("sendMessage", 403, description="Forbidden: bot was blocked by the user")
    fake_telegram.user_message(704, "/help")
    await fake_telegram.wait_for(lambda: _attempts(fake_telegram, 704) == 1)

    async def dead() -> bool:
        rows = await _rows(sessions)
        return rows[0].status == OutboxStatus.DEAD

    await eventually(dead)
    acc = await account(sessions, 704)
    assert acc.blocked_at is not None
    clock.advance(3600)
    await app.worker.settled()
    assert _attempts(fake_telegram, 704) == 1


async def test_a_redelivered_update_is_answered_once(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    inbound = Inbound(channel="telegram", external_id="705", event_id="9999", command="help")
    assert await app.dispatcher.handle(inbound) is True
    assert await app.dispatcher.handle(inbound) is False
    await fake_telegram.wait_texts(705, 1)
    assert len(await _rows(sessions)) == 1


async def test_long_text_is_split_below_telegram_limit(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    from bot.core.messages import Outbound
    from bot.core.outbox import enqueue

    async with sessions() as session, session.begin():
        acc = Account(channel="telegram", external_id="706", created_at=clock.now())
        session.add(acc)
        await session.flush()
        text = ("Một đoạn văn bản rất dài về an toàn trên mạng. " * 200).strip()
        await enqueue(session, acc, Outbound(text), key="test:long", now=clock.now())
        await enqueue(session, acc, Outbound(text), key="test:long", now=clock.now())
    app.worker.wake()
    texts = await fake_telegram.wait_texts(706, 3)
    assert all(len(t) <= 4096 for t in texts)
    assert " ".join(texts) == text
    assert len(await _rows(sessions)) == 3  # the repeated key added nothing


async def test_a_send_that_hangs_times_out_and_is_delivered_once_later(
        database_url, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    from tests.conftest import make_settings

    application = App(make_settings(database_url, fake_telegram, telegram_request_timeout=0.3),
                      clock)
    clock.on_advance(application.worker.wake)
    await application.start()
    try:
        fake_telegram.hang("sendMessage")
        fake_telegram.user_message(707, "/help")

        async def retry_scheduled() -> bool:
            rows = await _rows(sessions)
            return [(r.status, r.attempts) for r in rows] == [(OutboxStatus.PENDING, 1)]

        await eventually(retry_scheduled)
        assert "timed out" in (await _rows(sessions))[0].last_error.lower()
        clock.advance(5)
        texts = await fake_telegram.wait_texts(707, 1)
        assert len(texts) == 1 and _attempts(fake_telegram, 707) == 2
    finally:
        await application.stop()


async def test_unreachable_telegram_at_start_is_said_once_and_retried(
        database_url, clock, caplog: pytest.LogCaptureFixture) -> None:
    from bot.core.settings import Settings

    settings = Settings(_env_file=None, database_url=database_url, telegram_token="1:abcdefgh",
                        telegram_api_url="http://127.0.0.1:9/bot", http_port=0,
                        telegram_request_timeout=1)
    application = App(settings, clock)
    try:
        await application.start()  # not fatal: it may come back, and nothing is lost meanwhile
        assert list(application.waiting) == ["telegram"]
        [said] = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert "cannot reach the Telegram Bot API at http://127.0.0.1:9/bot" in said
    finally:
        await application.stop()
    assert application.waiting == {}


async def test_a_sent_mark_does_not_wait_for_company_when_no_other_send_is_in_flight(
        app: App, fake_telegram: FakeTelegram, sessions, monkeypatch) -> None:
    # Marks that finish together share a commit, and a send keeps its slot until its mark is
    # committed. When every send in flight already waits for its mark nobody else can join:
    # lingering then only held the slots (with the rate lifted, sending was capped at
    # concurrency ÷ linger). A linger of an hour makes the difference plain.
    from bot.core import worker

    monkeypatch.setattr(worker, "MARK_LINGER", 3600.0)
    fake_telegram.user_message(705, "/help")
    await fake_telegram.wait_texts(705, 1)

    async def recorded() -> bool:
        return [r.status for r in await _rows(sessions)] == [OutboxStatus.SENT]

    await eventually(recorded)


async def test_updates_handled_together_keep_one_chats_order(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    """Two updates of one chat in one batch: the second waits for the first (never both in
    one go, never a deadlock on the chat's own lock); both answered, in order; a repeat of
    an event already handled is reported as such."""
    first = Inbound(channel="telegram", external_id="706", event_id="9001", command="help")
    second = Inbound(channel="telegram", external_id="706", event_id="9002", text="xin chào")
    other = Inbound(channel="telegram", external_id="707", event_id="9003", command="help")
    async with sessions() as session, session.begin():  # stored, as the inbox hands them on
        session.add_all(InboxItem(channel=i.channel, event_id=i.event_id,
                                  inbound=inbound_to_payload(i), received_at=datetime.now(UTC))
                        for i in (first, second, other))
    outcomes = await asyncio.wait_for(
        app.dispatcher.handle_together([first, second, other]), 10)
    assert outcomes == [True, True, True]
    assert await app.dispatcher.handle_together([first, other]) == [False, False]
    help_text = (await fake_telegram.wait_texts(707, 1))[0]
    texts = await fake_telegram.wait_texts(706, 2)
    assert texts[0] == help_text and texts[1] != help_text
