"""Sending at the messenger's limits and never above them: a strict sliding window."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable

from bot.core.channel import DEPARTING, departing


class Pacer:
    """Paces sends strictly: never more than `per_second` in any window of one second (plus a
    safety margin), and never more than `chat_burst` to one chat in `chat_burst` seconds (a
    group: `group_per_minute` a minute).

    A send counts in the bot's window from the moment its request leaves (the channel calls
    `departing()` just before writing it; until then it counts as leaving now), so what the
    messenger sees arrive never holds N+1 in one of its seconds. A chat's window counts from
    the answer, which came after the messenger saw the send.

    Grants are spread evenly, and a freed slot goes to the most urgent waiter: an alert
    waiting for the bot's budget is sent next, ahead of every campaign message already
    waiting. Messengers punish bursts that a leaky bucket lets through (Telegram answers 429
    and pauses the whole bot), so this is a sliding window, not a bucket.
    """

    def __init__(self, per_second: float, *, chat_burst: int = 1, chat_seconds: float = 1.0,
                 group_per_minute: float = 20.0, margin: float = 0.01,
                 max_chats: int = 100_000, now: Callable[[], float] = time.monotonic) -> None:
        self.capacity = max(1, round(per_second))
        self.window = self.capacity / per_second + margin
        self.chat_burst = max(1, chat_burst)
        self.chat_window = self.chat_burst * chat_seconds + margin
        self.group_burst = max(1, round(group_per_minute))
        self.group_window = 60.0 * self.group_burst / group_per_minute + margin
        self._now = now
        self._left: deque[float] = deque()  # when recent sends left
        self._chats: OrderedDict[str, deque[float]] = OrderedDict()
        self._chats_in_flight: dict[str, int] = {}
        self._max_chats = max_chats
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._pump_task: asyncio.Task[None] | None = None
        # Grants are spread evenly, one every window/capacity seconds: a window filled in one
        # burst would free up in one burst a second later, and an alert arriving in between
        # would wait for it. Evenly spread, the next slot is never more than a tick away.
        self.spacing = self.window / self.capacity
        self._next_grant = float("-inf")

    def _limits(self, chat_id: str) -> tuple[int, float]:
        group = chat_id.startswith("-")
        return (self.group_burst, self.group_window) if group else \
            (self.chat_burst, self.chat_window)

    def chat_ready_in(self, chat_id: str) -> float:
        """Seconds until chat_id may receive another message (0 when it may now)."""
        burst, window = self._limits(chat_id)
        busy = self._chats_in_flight.get(chat_id, 0)
        times = self._chats.get(chat_id)
        if times:
            now = self._now()
            while times and times[0] <= now - window:
                times.popleft()
        if busy + len(times or ()) < burst:
            return 0.0
        if not times:  # all of its budget is in flight: once answered, a whole window
            return window
        return times[0] + window - self._now()

    @contextlib.asynccontextmanager
    async def slot(self, chat_id: str, priority: int = 0) -> AsyncIterator[None]:
        """Pace one send to chat_id; urgent (low) priorities go first.

        The chat's turn is taken here; the bot's budget is taken when the channel calls
        `departing()` just before writing the request (or here, at the end, if it never
        did), so the send counts in the window from the moment it really leaves.
        """
        wait = self.chat_ready_in(chat_id)
        while wait > 0:  # rare: the worker claims only chats that are ready
            await asyncio.sleep(wait)
            wait = self.chat_ready_in(chat_id)
        self._chats_in_flight[chat_id] = self._chats_in_flight.get(chat_id, 0) + 1
        left = False

        async def leave() -> None:
            nonlocal left
            if left:
                return
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._queue, (priority, next(self._seq), granted))
            if self._pump_task is None or self._pump_task.done():
                self._pump_task = asyncio.create_task(self._pump(), name="pacer")
            try:
                await granted
            except asyncio.CancelledError:
                granted.cancel()  # the pump skips it (a slot granted just now stays counted)
                raise
            left = True

        token = DEPARTING.set(leave)
        try:
            yield
        finally:
            DEPARTING.reset(token)
            self._chat_times(chat_id).append(self._now())
            busy = self._chats_in_flight.get(chat_id, 1) - 1
            if busy:
                self._chats_in_flight[chat_id] = busy
            else:
                self._chats_in_flight.pop(chat_id, None)

    async def acquire(self, chat_id: str, priority: int = 0) -> None:
        """Take a slot for a send that leaves at once."""
        async with self.slot(chat_id, priority):
            await departing()

    def _chat_times(self, chat_id: str) -> deque[float]:
        times = self._chats.get(chat_id)
        if times is None:
            self._forget_quiet_chats()
            times = self._chats[chat_id] = deque()
            if len(self._chats) > self._max_chats:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return times

    def _forget_quiet_chats(self) -> None:
        """Drop the chats whose window has passed, least recently sent to first: a campaign
        touches each chat once, and a record kept for each (about 700 bytes) grew by 70 MB
        over 100,000 recipients. The order is by last use, so this stops at the first chat
        still in its window."""
        now = self._now()
        while self._chats:
            chat_id, times = next(iter(self._chats.items()))
            if times and times[-1] > now - self._limits(chat_id)[1]:
                return
            del self._chats[chat_id]

    async def _pump(self) -> None:
        """Let waiters go one by one, evenly spaced, each when the window has room."""
        while self._queue:
            now = self._now()
            while self._left and self._left[0] <= now - self.window:
                self._left.popleft()
            if len(self._left) >= self.capacity:  # room when the oldest leaves the window
                await asyncio.sleep(self._left[0] + self.window - now)
                continue
            if (gap := self._next_grant - now) > 0:
                await asyncio.sleep(gap)
                continue
            _priority, _seq, granted = heapq.heappop(self._queue)
            if granted.done():  # its sender gave up waiting
                continue
            self._left.append(now)
            # The next grant is due one tick after this one was due, not after it happened:
            # a loop that wakes a little late catches up instead of drifting below the rate
            # (never by more than one tick, and the window above still has the last word).
            self._next_grant = max(self._next_grant, now - self.spacing) + self.spacing
            granted.set_result(None)


class Paced:
    """What a channel with a Pacer offers the worker (mixed into each adapter)."""

    pacer: Pacer

    def pace(self, chat_id: str, priority: int = 0) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a place in the messenger's limits while one message to chat_id is sent."""
        return self.pacer.slot(chat_id, priority)

    def chat_ready_in(self, chat_id: str) -> float:
        """Seconds until chat_id may receive another message."""
        return self.pacer.chat_ready_in(chat_id)
