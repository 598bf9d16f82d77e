"""The pacer: never N+1 sends in any second, never two to one chat in its second, alerts first."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from bot.app import App
from bot.channels.pacing import Pacer
from storage.models import Outbox, OutboxStatus, Priority
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import eventually
from tests.auxil.outbox import queue_to_chats
from tests.conftest import make_settings


def _most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of times that fall in one window of the given length."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_the_pacer_never_lets_n_plus_1_sends_into_one_second_nor_2_into_a_chats():
    # The time recorded is when each sender resumed, which lags its grant by however long the
    # event loop took to get to it (tens of ms on a loaded 2-core machine): the margin, as in
    # production (SAFESCHOOL_PACE_MARGIN_SECONDS), absorbs that, so the test measures the
    # pacer and not the machine.
    pacer = Pacer(100, chat_burst=1, margin=0.05)
    granted: dict[str, list[float]] = {}

    async def send(chat: str) -> None:
        await pacer.acquire(chat)
        granted.setdefault(chat, []).append(time.monotonic())

    # 150 chats, two messages each, all wanting to go at once: 300 sends, and more chats
    # than the bot may serve in one second.
    await asyncio.gather(*(send(f"{n}") for _ in range(2) for n in range(150)))
    every = [t for times in granted.values() for t in times]
    assert len(every) == 300
    assert _most_in_any_window(every, 1.0) <= 100
    assert max(_most_in_any_window(times, 1.0) for times in granted.values()) == 1


async def test_an_alert_waiting_for_the_budget_goes_before_every_waiting_campaign_message():
    pacer = Pacer(20, margin=0.0)
    order: list[str] = []
    budget_spent = asyncio.Event()

    async def send(name: str, chat: str, priority: int) -> None:
        await pacer.acquire(chat, priority)
        order.append(name)
        if len(order) == 20:
            budget_spent.set()

    campaign = [asyncio.create_task(send(f"c{n}", f"p{n}", Priority.CAMPAIGN))
                for n in range(60)]
    await asyncio.wait_for(budget_spent.wait(), 5)  # 40 campaign messages wait for room now
    alert = asyncio.create_task(send("alert", "officer", Priority.ALERT))
    await asyncio.wait_for(alert, 5)
    position = order.index("alert")
    assert position <= 21, f"the alert went out after {position} campaign messages"
    assert len(order) < 60  # campaign messages were still waiting behind it
    for task in campaign:
        task.cancel()
    await asyncio.gather(*campaign, return_exceptions=True)


async def test_a_strict_bot_api_never_answers_429_to_the_worker(
        database_url, fake_telegram: FakeTelegram, sessions, clock) -> None:
    fake_telegram.strict_rate = 60
    # More chats than a second's budget, and a few with three messages: the chat's second too.
    await queue_to_chats(sessions, {5000 + n: 3 if n < 10 else 1 for n in range(150)},
                         priority=Priority.CAMPAIGN, now=clock.now())
    # The fake runs in this test's event loop, beside the app: under a busy suite it stamps
    # arrivals in bunches of up to ~0.1 s, more than production's 0.03 s margin allows for.
    # The window itself is proven exactly above; here the margin covers the fake's jitter.
    app = App(make_settings(database_url, fake_telegram, telegram_rate_per_second=60,
                            telegram_chat_burst=1, outbox_concurrency=8,
                            pace_margin_seconds=0.15), clock)
    await app.start()
    try:
        async def all_sent_or_refused() -> bool:
            if fake_telegram.too_many:  # a refused row waits on the frozen clock: stop here
                return True
            async with sessions() as session:
                statuses = (await session.execute(select(Outbox.status))).scalars().all()
            return all(s == OutboxStatus.SENT for s in statuses)

        await eventually(all_sent_or_refused, timeout=30)
    finally:
        await app.stop()
    assert fake_telegram.too_many == 0, f"{fake_telegram.too_many} sends refused with 429"
    assert fake_telegram.sent_total == 170


async def test_the_pacer_forgets_a_chat_once_its_window_has_passed() -> None:
    # A campaign sends to each chat once: a record per chat kept for ever grew the process
    # by about 700 bytes a recipient. One second later a chat's record is of no use.
    later = [0.0]  # seconds the test moves the clock on, beyond the real time
    pacer = Pacer(1_000_000, margin=0.0, now=lambda: time.monotonic() + later[0])
    for n in range(500):
        await pacer.acquire(f"{n}")
    assert pacer.chat_ready_in("499") > 0  # still in its second: remembered
    later[0] += 1.5
    await pacer.acquire("next")
    assert len(pacer._chats) == 1  # only the chat sent to now
    assert pacer.chat_ready_in("499") == 0
