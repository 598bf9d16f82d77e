"""The delivery worker: claims due outbox rows and sends them, honouring every limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from bot.core.channel import (
    Channel,
    FatalChannelError,
    PermanentError,
    RateLimited,
    TransientError,
    Unreachable,
)
from bot.core.clock import Clock
from bot.core.logs import describe
from bot.core.messages import Outbound
from bot.core.metrics import Metrics, lane
from storage import db
from storage.models import Account, Outbox, OutboxStatus, Priority

_LOGGER = logging.getLogger(__name__)
FATAL_PAUSE = timedelta(minutes=5)
# While a messenger fails, its sends pause and a cheap probe (getMe) asks whether it is back:
# first after half a second, then doubling while failures continue, never more than a few
# seconds apart, so an alert waiting for it goes out within seconds of its recovery.
MARK_LINGER = 0.15  # seconds a sent mark waits for others to share its commit
# Alerts get sending slots of their own on top of `concurrency`: a campaign that fills every
# slot (each waiting for the bot's budget) never makes an alert wait for one.
ALERT_LANE = 4
BUFFER = 4  # rows claimed ahead, per sending slot
FIRST_PROBE = 0.5
MAX_PROBE_INTERVAL = 4.0


@dataclass(frozen=True)
class Claimed:
    """What the worker needs of a claimed row, detached from any session."""

    id: int
    channel: str
    chat_id: str
    account_id: int
    payload: dict[str, Any]
    attempts: int
    key: str
    created_at: datetime
    priority: int


_T = Outbox.__table__
# One executemany for a whole group of sends; guarded like _mine (still ours, same attempt).
MARK_SENT = (
    update(_T)
    .where(_T.c.id == bindparam("b_id"), _T.c.status == OutboxStatus.SENDING,
           _T.c.attempts == bindparam("b_attempts"))
    .values(status=OutboxStatus.SENT, provider_message_id=bindparam("b_mid"),
            sent_at=bindparam("b_now", type_=_T.c.sent_at.type), lease_until=None,
            last_error=None)
)


# "An earlier row of the same chat is still queued": built once (an alias built per claim
# rebuilt its column collection every time, a tenth of the worker's CPU).
_EARLIER = _T.alias("earlier")
_AHEAD = (select(_EARLIER.c.id)
          .where(_EARLIER.c.account_id == _T.c.account_id,
                 _EARLIER.c.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
                 or_(_EARLIER.c.priority < _T.c.priority,
                     and_(_EARLIER.c.priority == _T.c.priority, _EARLIER.c.id < _T.c.id)))
          .exists())


def backoff(attempts: int) -> float:
    """Seconds to wait after the n-th failed attempt: 2, 4, 8 … capped at 30 min, jittered."""
    base = min(2.0 ** attempts, 1800.0)
    return base * random.uniform(0.8, 1.2)


class DeliveryWorker:
    """Sends outbox rows through their channels; survives crashes via leases.

    Fair: a chat that must wait (one message a second per chat) never holds a sending slot;
    its queued rows are spread out in time so that every other chat's rows stay visible to
    the next claim.
    """

    def __init__(
        self,
        sessions: async_sessionmaker,
        channels: dict[str, Channel],
        clock: Clock,
        *,
        concurrency: int = 8,
        max_attempts: int = 100,
        give_up_after: timedelta = timedelta(hours=24),
        lease_seconds: float = 30.0,
        poll_seconds: float = 2.0,
        on_unreachable: Callable[[AsyncSession, str, datetime], Awaitable[None]] | None = None,
        quiet: Callable[[datetime], bool] = lambda _now: False,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.channels = channels
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.max_attempts = max_attempts
        self.give_up_after = give_up_after
        self.on_unreachable = on_unreachable
        self.quiet = quiet
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: dict[asyncio.Task[None], Claimed] = {}
        self._ready: list[Claimed] = []  # claimed (leased) but not started: never sent yet
        self._kicked = True  # new rows were committed since the last claim
        self._round = 0  # loops started
        self._idle_round = -1  # the last loop that ended with nothing it could send
        self._idle = asyncio.Condition()
        self._paused: dict[str, datetime] = {}
        self._pause_reason: dict[str, str] = {}  # why: rate_limited, unreachable, rejected
        self._held: set[str] = set()  # channels not started yet: their rows wait, untouched
        self._failures: dict[str, int] = {}  # consecutive failed rounds (probes) per channel
        self._probe_due: set[str] = set()  # paused for trouble: probe before sending again
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._renewed_at: datetime | None = None
        self._soonest_chat: float | None = None  # seconds until a waiting chat may send
        self._marks: list[tuple[Claimed, str, asyncio.Future[None]]] = []
        self._marking: asyncio.Task[None] | None = None
        self._marks_complete = asyncio.Event()  # every send in flight awaits its mark

    def wake(self) -> None:
        """Look for due rows now (called after every commit that queued a message)."""
        self._kicked = True
        self._wake.set()

    async def start(self) -> None:
        """Start the claim loop."""
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="delivery-worker")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop claiming, let in-flight sends finish, and return unfinished rows to the queue."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        unfinished, self._ready = list(self._ready), []
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=drain_seconds)
            unfinished += [self._tasks[t] for t in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if unfinished:
            await self._release(unfinished)

    async def settled(self, within: float = 10.0) -> None:
        """Return once the worker has looked at the queue since this call and found nothing
        it may send now (everything due sent and recorded, or waiting for its time).

        The barrier before a test asserts that nothing was sent: without it the worker may
        simply not have run yet, and the assertion could never fail.
        """
        target = self._round + 1
        self.wake()
        async with self._idle:
            await asyncio.wait_for(self._idle.wait_for(lambda: self._idle_round >= target),
                                   within)

    async def _run(self) -> None:
        while not self._stopping:
            self._round += 1
            self._wake.clear()
            # Keep a buffer of claimed rows (BUFFER times the concurrency): one claim serves
            # many sends. Top it up when new work was committed or when half of it went:
            # at the messenger's pace that is a claim every second or so, not one per send.
            self._start_sends()  # rows already claimed go first: the claim may wait
            buffer = BUFFER * self.concurrency
            room = buffer - len(self._ready) - len(self._tasks)
            claimed: list[Claimed] = []
            if self._kicked and room < ALERT_LANE:
                room = ALERT_LANE  # new work may be an alert: look even when the buffer is full
            if room > 0 and (self._kicked or room >= max(1, buffer // 2)):
                self._kicked = False
                try:
                    claimed = await self._claim(room)
                except Exception as exc:
                    if db.is_transient(exc):  # the database blinked: the next loop retries
                        _LOGGER.warning("Could not claim outbox rows (%s); retrying",
                                        type(exc).__name__)
                    else:
                        _LOGGER.exception("Could not claim outbox rows; retrying")
                self._ready = sorted(self._ready + claimed, key=lambda c: (c.priority, c.id))
            self._start_probes()
            await self._renew_leases()
            paused = set(self._active_paused(self.clock.now()))
            if paused and any(r.channel in paused for r in self._ready):
                # The channel is down: hand its claimed rows back, so that when it returns
                # the queue is drained in priority order (and other instances may take them).
                back = [r for r in self._ready if r.channel in paused]
                self._ready = [r for r in self._ready if r.channel not in paused]
                try:
                    await self._release(back)
                except Exception:
                    _LOGGER.exception("Could not hand back claimed rows; their lease will")
            self._start_sends()
            if claimed and len(claimed) == room:
                continue  # there may be more waiting
            if self._tasks or self._ready:
                timeout = self.poll_seconds  # a finishing send wakes the loop: no query
            else:
                try:
                    timeout = await self._wait_seconds()
                except Exception:
                    timeout = self.poll_seconds
                # Looked, and nothing may go now; unless something happened meanwhile (a
                # send finished, work was committed): then the look may be stale, and the
                # loop goes round again at once.
                if not self._kicked and not self._wake.is_set():
                    async with self._idle:
                        self._idle_round = self._round
                        self._idle.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _start_sends(self) -> None:
        """Start a send for each claimed row a slot is free for (alerts have extra slots);
        rows of a paused channel stay claimed until they are handed back."""
        paused = set(self._active_paused(self.clock.now()))
        waiting = []
        for row in self._ready:
            free = len(self._tasks) < self.concurrency or (
                row.priority <= Priority.ALERT
                and len(self._tasks) < self.concurrency + ALERT_LANE)
            if not free or row.channel in paused:
                waiting.append(row)
                continue
            task = asyncio.create_task(self._deliver(row))
            self._tasks[task] = row
            task.add_done_callback(self._finished)
        self._ready = waiting

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            if db.is_transient(exc):  # its row keeps its lease and is sent again after it
                _LOGGER.warning("A delivery could not be recorded (%s)", type(exc).__name__)
            else:
                _LOGGER.error("Delivery task crashed", exc_info=exc)
        if not self._stopping:
            # Refill the slot now, not when the loop next runs: the loop may be waiting for
            # the database (a claim on SQLite waits for the write lock), and a slot left
            # empty meanwhile is a send the pace cannot make up.
            self._start_sends()
        self._wake.set()

    def hold(self, name: str) -> None:
        """Send nothing through a channel until resume(name) (it is still starting)."""
        self._held.add(name)

    def resume(self, name: str) -> None:
        """The channel is up: send its queue."""
        self._held.discard(name)
        self.wake()

    def paused(self, now: datetime) -> list[str]:
        """The channels that cannot send now (for the console's dashboard)."""
        return sorted(set(self._active_paused(now)))

    def state(self, name: str, now: datetime) -> tuple[str, str | None, datetime | None]:
        """A channel's state for /readyz: (up | paused | starting, why, until when)."""
        if name in self._held:
            return "starting", None, None
        if name in self._active_paused(now):
            until = self._paused.get(name)
            return "paused", self._pause_reason.get(name), until if until and until > now \
                else None
        return "up", None, None

    def _active_paused(self, now: datetime) -> list[str]:
        """Channels that may not send now: held, paused, or waiting for a probe to succeed."""
        return [*self._held, *(name for name, until in self._paused.items()
                               if (until > now or name in self._probe_due)
                               and name not in self._held)]

    def _start_probes(self) -> None:
        """Probe each channel whose pause for trouble has run out (one probe at a time)."""
        now = self.clock.now()
        for name in list(self._probe_due):
            if self._paused.get(name, now) > now or name in self._probes:
                continue
            task = asyncio.create_task(self._probe(name), name=f"probe-{name}")
            self._probes[name] = task

    async def _probe(self, name: str) -> None:
        channel = self.channels[name]
        try:
            probe = getattr(channel, "probe", None)
            if probe is not None:
                await probe()
        except RateLimited as exc:
            self._paused[name] = self.clock.now() + timedelta(seconds=exc.retry_after)
        except Exception as exc:
            self._trouble(name)
            _LOGGER.warning("%s is still unreachable (%s); next probe in %.1fs", name,
                            type(exc).__name__,
                            (self._paused[name] - self.clock.now()).total_seconds())
        else:
            _LOGGER.info("%s answers again; sending resumes", name)
            self._probe_due.discard(name)
            self._failures[name] = 0
            self._paused.pop(name, None)
        finally:
            self._probes.pop(name, None)
            self._wake.set()

    def _trouble(self, name: str) -> None:
        """Count one failed round for a channel and pause it until the next probe."""
        failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        pause = min(FIRST_PROBE * 2 ** (failures - 1), MAX_PROBE_INTERVAL)
        self._paused[name] = self.clock.now() + timedelta(seconds=pause * random.uniform(0.9, 1.1))
        self._pause_reason[name] = "unreachable"
        self._probe_due.add(name)

    async def _renew_leases(self) -> None:
        """Extend the leases of rows this worker holds, so a short lease is safe.

        A process killed with SIGKILL stops renewing: its rows are taken over by another
        process (or the next start) within one lease.
        """
        now = self.clock.now()
        every = self.lease / 3
        if self._renewed_at is not None and now - self._renewed_at < every:
            return
        self._renewed_at = now
        held = [c.id for c in [*self._tasks.values(), *self._ready]]
        if not held:
            return
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(update(Outbox).where(
                    Outbox.id.in_(held), Outbox.status == OutboxStatus.SENDING,
                ).values(lease_until=now + self.lease))
        except Exception as exc:
            _LOGGER.warning("Could not renew outbox leases (%s)", type(exc).__name__)

    async def _claim(self, limit: int) -> list[Claimed]:
        now = self.clock.now()
        holding = [*self._tasks.values(), *self._ready]
        busy_chats = {(c.channel, c.chat_id) for c in holding}
        busy_ids = {c.id for c in holding}
        channels = [c for c in self.channels if c not in self._active_paused(now)]
        if not channels:
            return []
        async with self.sessions() as session, session.begin():
            conn = await session.connection()  # Core statements: no ORM layer per claim
            # Two index-ordered queries instead of one OR: due rows walk the (status,
            # priority, id) index and stop after `want` rows; expired leases are few. They
            # read the few columns the choice needs (no payloads, no ORM objects): a claim
            # runs several times a second at the messenger's pace.
            want = limit * 4 + len(busy_ids)
            # Only the first row of each chat is a candidate (the NOT EXISTS walks the
            # account index): a chat with a hundred queued replies offers one row, not a
            # hundred, so it can never hide another chat's reply or alert from the claim.
            next_at: Any = _T.c.next_attempt_at
            if session.get_bind().dialect.name == "sqlite":
                # A unary + keeps SQLite off ix_outbox_next for this term: on that index it
                # would sort every pending row (240 ms with 90,000 queued) instead of walking
                # ix_outbox_claim in priority order and stopping at the limit (0.3 ms).
                next_at = UnaryExpression(next_at, operator=operators.custom_op("+"),
                                          type_=_T.c.next_attempt_at.type)
            light = (_T.c.id, _T.c.channel, _T.c.chat_id, _T.c.priority)
            due = (select(*light)
                   .where(_T.c.status == OutboxStatus.PENDING, next_at <= now,
                          _T.c.channel.in_(channels), ~_AHEAD)
                   .order_by(_T.c.priority, _T.c.id).limit(want)
                   .with_for_update(skip_locked=True))
            if self.quiet(now):  # awareness messages wait for morning; alerts never wait
                due = due.where(_T.c.priority < Priority.CAMPAIGN)
            expired = (select(*light)
                       .where(_T.c.status == OutboxStatus.SENDING, _T.c.lease_until < now,
                              _T.c.channel.in_(channels))
                       .order_by(_T.c.priority, _T.c.id).limit(want)
                       .with_for_update(skip_locked=True))
            found = {row.id: row for q in (expired, due)
                     for row in (await conn.execute(q)).all()}
            rows = sorted(found.values(), key=lambda r: (r.priority, r.id))
            picked: list[int] = []
            soonest: float | None = None
            for row in rows:
                key = (row.channel, row.chat_id)
                if row.id in busy_ids or key in busy_chats:
                    continue  # one message at a time per chat keeps them in order
                ready_in = self._chat_ready_in(row.channel, row.chat_id)
                if ready_in > 0:  # this chat must wait: it does not get to hold a slot
                    soonest = ready_in if soonest is None else min(soonest, ready_in)
                    continue
                busy_chats.add(key)
                picked.append(row.id)
                if len(picked) >= limit:
                    break
            self._soonest_chat = soonest
            if not picked:
                return []
            # One statement takes the picked rows and returns what sending needs.
            taken = (await conn.execute(
                update(_T).where(_T.c.id.in_(picked))
                .values(status=OutboxStatus.SENDING, lease_until=now + self.lease,
                        attempts=_T.c.attempts + 1)
                .returning(_T.c.id, _T.c.channel, _T.c.chat_id, _T.c.account_id,
                           _T.c.payload, _T.c.attempts, _T.c.idempotency_key,
                           _T.c.created_at, _T.c.priority))).all()
            claimed = [Claimed(r.id, r.channel, r.chat_id, r.account_id, dict(r.payload),
                               r.attempts, r.idempotency_key, r.created_at, r.priority)
                       for r in sorted(taken, key=lambda r: (r.priority, r.id))]
        return claimed

    def _chat_ready_in(self, channel: str, chat_id: str) -> float:
        ready_in = getattr(self.channels[channel], "chat_ready_in", None)
        return ready_in(chat_id) if ready_in is not None else 0.0

    async def _wait_seconds(self) -> float:
        now = self.clock.now()
        async with self.sessions() as session:
            due = (await session.execute(
                select(func.min(Outbox.next_attempt_at))
                .where(Outbox.status == OutboxStatus.PENDING)
            )).scalar_one_or_none()
        wait = self.poll_seconds
        if self._soonest_chat is not None:  # a chat's pace, not the database, says when
            wait = min(wait, max(0.01, self._soonest_chat))
        for name, until in self._paused.items():  # a probe is due when a pause runs out
            if name not in self._probes:
                wait = min(wait, max(0.01, (until - now).total_seconds()))
        if due is None:
            return wait
        if due.tzinfo is None:  # func.min bypasses the column type on some dialects
            due = due.replace(tzinfo=now.tzinfo)
        seconds = (due - now).total_seconds()
        return wait if seconds <= 0 else min(seconds, wait)

    async def _deliver(self, row: Claimed) -> None:
        channel = self.channels[row.channel]
        started = time.monotonic()
        try:
            async with channel.pace(row.chat_id, row.priority):
                started = time.monotonic()  # the pace's wait is not the messenger's time
                message_id = await channel.send(row.chat_id, Outbound.from_payload(row.payload))
        except RateLimited as exc:
            if self.metrics is not None:
                self.metrics.rate_limited.labels(row.channel).inc()
            self._pause_reason[row.channel] = "rate_limited"
            self._paused[row.channel] = self.clock.now() + timedelta(seconds=exc.retry_after)
            await self._retry(row, exc.retry_after, str(exc), counts=False)
        except TransientError as exc:
            # The messenger is in trouble, not this message: pause the whole channel and
            # probe it, so when it recovers the queue drains in priority order. Sends that
            # were in flight together fail together: that is one failed round, not many.
            if self.metrics is not None:
                self.metrics.transient.labels(row.channel).inc()
            first = row.channel not in self._active_paused(self.clock.now())
            if first:
                self._trouble(row.channel)
            await self._retry(row, 0, str(exc), counts=first)
        except Unreachable as exc:
            await self._dead(row, str(exc), unreachable=True)
        except PermanentError as exc:
            await self._dead(row, str(exc))
        except FatalChannelError as exc:
            _LOGGER.critical("Channel %s cannot send: %s", row.channel, exc)
            self._pause_reason[row.channel] = "rejected"
            self._paused[row.channel] = self.clock.now() + FATAL_PAUSE
            await self._retry(row, FATAL_PAUSE.total_seconds(), str(exc), counts=False)
        except Exception as exc:
            _LOGGER.exception("Unexpected error sending outbox row %s", row.id)
            await self._retry(row, backoff(row.attempts), describe(exc))
        else:
            _LOGGER.debug("Outbox row %s sent (%s, priority %s)", row.id, row.channel,
                          row.priority)
            if self.metrics is not None:
                self._count_sent(row, time.monotonic() - started)
            await self._mark_sent(row, message_id)

    def _count_sent(self, row: Claimed, seconds: float) -> None:
        assert self.metrics is not None
        name = lane(row.priority)
        self.metrics.sent.labels(row.channel, name).inc()
        self.metrics.send_seconds.labels(row.channel, name).observe(seconds)
        waited = (self.clock.now() - row.created_at).total_seconds()
        self.metrics.wait_seconds.labels(row.channel, name).observe(max(0.0, waited))

    def _mine(self, row: Claimed) -> Any:
        """Guard an update: the row is still ours (nobody re-claimed it after our lease)."""
        return and_(Outbox.id == row.id, Outbox.status == OutboxStatus.SENDING,
                    Outbox.attempts == row.attempts)

    async def _mark_sent(self, row: Claimed, message_id: str) -> None:
        """Record a send; marks that finish together share one commit (group commit).

        The task keeps its slot until its mark is committed, so at most `concurrency`
        messages are ever sent-but-unrecorded: the crash duplicate bound is unchanged.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((row, message_id, done))
        if len(self._marks) >= len(self._tasks):
            self._marks_complete.set()
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._flush_marks())
        await done

    async def _flush_marks(self) -> None:
        # Linger a moment so that the sends finishing together share one commit: at the
        # messenger's pace that is one write transaction for several messages, not each.
        # Not when every send in flight already waits for its mark: nobody else can join
        # then, and lingering only held the slots (with the rate lifted it capped sending
        # at concurrency ÷ linger: 16 slots, 94 messages a second).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._marks_complete.wait(), MARK_LINGER)
        while self._marks:
            self._marks_complete.clear()
            batch, self._marks = self._marks, []
            async def mark(batch: list[Any] = batch) -> None:
                async with self.sessions() as session, session.begin():
                    conn = await session.connection()
                    await conn.execute(MARK_SENT, [
                        {"b_id": row.id, "b_attempts": row.attempts, "b_mid": message_id,
                         "b_now": self.clock.now()} for row, message_id, _ in batch])

            try:  # a message that went out must be recorded, or it goes out again later
                await db.retry_transient(mark, attempts=20, max_delay=2.0,
                                         what="Recording sent messages")
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _retry(self, row: Claimed, delay: float, error: str, counts: bool = True) -> None:
        now = self.clock.now()
        too_old = now - row.created_at > self.give_up_after
        if counts and (row.attempts >= self.max_attempts or too_old):
            await self._dead(row, f"gave up after {row.attempts} attempts: {error}")
            return
        _LOGGER.warning("Outbox row %s will be retried in %.0fs: %s", row.id, delay, error)
        values: dict[str, Any] = {
            "status": OutboxStatus.PENDING, "lease_until": None, "last_error": error[:2000],
            "next_attempt_at": now + timedelta(seconds=delay),
        }
        if not counts:
            values["attempts"] = row.attempts - 1

        async def write() -> None:
            async with self.sessions() as session, session.begin():
                await session.execute(update(Outbox).where(self._mine(row)).values(**values))

        await db.retry_transient(write, what="Rescheduling a message")

    async def _dead(self, row: Claimed, error: str, unreachable: bool = False) -> None:
        now = self.clock.now()
        _LOGGER.warning("Outbox row %s is dead: %s", row.id, error)

        async def write() -> None:
            async with self.sessions() as session, session.begin():
                await session.execute(update(Outbox).where(self._mine(row)).values(
                    status=OutboxStatus.DEAD, lease_until=None, last_error=error[:2000]))
                if unreachable:
                    await session.execute(update(Account).where(Account.id == row.account_id)
                                          .values(blocked_at=now))
                    if self.on_unreachable is not None:
                        await self.on_unreachable(session, row.key, now)

        await db.retry_transient(write, what="Recording an undeliverable message")

    async def _release(self, rows: list[Claimed]) -> None:
        async def write() -> None:
            async with self.sessions() as session, session.begin():
                for row in rows:
                    await session.execute(update(Outbox).where(self._mine(row)).values(
                        status=OutboxStatus.PENDING, lease_until=None,
                        attempts=row.attempts - 1))

        await db.retry_transient(write, what="Handing back claimed messages")
