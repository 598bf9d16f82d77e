"""The one way in: every inbound update is stored before the messenger hears we have it.

Channels call :meth:`Inbox.accept` with what they received (polling or webhook alike) and
acknowledge only after it returned; it raises when the database cannot store the updates, so
a poller keeps its offset and a webhook answers 503, and the messenger delivers them again.
Stored updates are handled in the background; one that cannot be handled because the database
is away stays in the table and is swept up, in arrival order, as soon as the database is back
(and at the next start, if the process dies first; with several instances, by the instance
that leads next, or by the leader once it has waited too long).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import defaultdict, deque
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.clock import Clock
from bot.core.dispatch import Deferred, Dispatcher, sanitise
from bot.core.messages import Inbound, inbound_from_payload, inbound_to_payload
from bot.core.metrics import Metrics
from storage import db
from storage.models import InboxItem

_LOGGER = logging.getLogger(__name__)
SWEEP_BATCH = 500
# Updates of different chats handled in one transaction: one commit for many short answers;
# few enough that an alert's claim waits for the connection no more than tens of ms.
TOGETHER = 20


class Inbox:
    """Stores inbound updates first, then hands them to the dispatcher, in order per chat."""

    def __init__(self, sessions: async_sessionmaker, dispatcher: Dispatcher, clock: Clock, *,
                 sweep_seconds: float = 1.0, metrics: Metrics | None = None) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        table = InboxItem.__table__
        self._store = db.insert_ignoring(sessions.kw["bind"].dialect.name, InboxItem, "channel",
                                         "event_id").returning(table.c.channel, table.c.event_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_hand: set[tuple[str, str]] = set()  # being handled by this process
        self._backlog = asyncio.Event()  # something stored is waiting for the sweeper
        self._stopping = False
        self._stop = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # ---- taking updates in ----------------------------------------------------------------

    async def accept(self, inbounds: Iterable[Inbound],
                     skipped: Iterable[tuple[str, str]] = ()) -> int:
        """Store updates (and the ids of updates we cannot read); return how many were new.

        Raises when they could not be stored: the caller must not acknowledge them.
        """
        items = [sanitise(i) for i in inbounds]  # stored as they will be handled
        skipped = list(skipped)
        if not items and not skipped:
            return 0
        now = self.clock.now()

        rows = [{"channel": i.channel, "event_id": i.event_id, "inbound": inbound_to_payload(i),
                 "received_at": now, "processed_at": None} for i in items]
        # Kept so the id is known; handled as done: there is nothing to handle.
        rows += [{"channel": channel, "event_id": event_id, "inbound": {"unreadable": True},
                  "received_at": now, "processed_at": now} for channel, event_id in skipped]

        async def store() -> list[Inbound]:
            async with self.sessions() as session, session.begin():
                # one statement for the batch, in arrival order; returns the rows it stored
                result = await session.execute(self._store, rows)
                stored = {(channel, event_id) for channel, event_id in result}
            return [i for i in items if (i.channel, i.event_id) in stored]

        new = await db.retry_transient(store, attempts=3, what="Storing inbound updates")
        if self.metrics is not None:
            for inbound in new:
                self.metrics.inbound.labels(inbound.channel).inc()
        # Every stored update of the batch is handed on, not just the newly inserted ones: a
        # commit that failed on the way back (the database restarting) may have stored them
        # after all, and a redelivery of an update stored before a crash must be handled too.
        # The dispatcher's own record makes an update already handled a no-op.
        # While older updates wait for the sweeper, newer ones queue behind them (the sweeper
        # takes them in arrival order), so one person's messages keep their order.
        if items and not self._backlog.is_set():
            self._spawn(self._handle_in_order(items))
        return len(new)

    # ---- handling ------------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_in_order(self, inbounds: list[Inbound]) -> None:
        """Handle a batch: chats side by side, each chat's updates one after another.

        Round by round: the first update of every chat, then the second …; a round's updates
        are handled TOGETHER to a transaction. A chat whose update was deferred (the database
        is away) stops there: its later updates wait for the sweeper, in order.
        """
        by_chat: dict[tuple[str, str], deque[Inbound]] = defaultdict(deque)
        for inbound in inbounds:
            by_chat[(inbound.channel, inbound.external_id)].append(inbound)
        chats = list(by_chat.values())
        while chats:
            round_ = [chat.popleft() for chat in chats]
            round_ = [i for i in round_ if (i.channel, i.event_id) not in self._in_hand]
            keys = {(i.channel, i.event_id) for i in round_}
            self._in_hand |= keys
            try:
                outcomes = await asyncio.gather(*(
                    self.dispatcher.handle_together(round_[n:n + TOGETHER])
                    for n in range(0, len(round_), TOGETHER)))
            except Exception:  # the dispatcher answers errors itself; this is a last guard
                _LOGGER.exception("Inbound updates could not be handled")
                self._backlog.set()
                return
            finally:
                self._in_hand -= keys
            stopped = {(i.channel, i.external_id)
                       for i, outcome in zip(round_, itertools.chain(*outcomes), strict=True)
                       if isinstance(outcome, Deferred)}
            if stopped:
                self._backlog.set()
            chats = [chat for chat in chats
                     if chat and (chat[0].channel, chat[0].external_id) not in stopped]

    async def _sweep(self) -> int:
        """Handle what is stored but not handled, oldest first; return how many were found."""
        async with self.sessions() as session:
            payloads = (await session.execute(
                select(InboxItem.inbound).where(InboxItem.processed_at.is_(None))
                .order_by(InboxItem.id).limit(SWEEP_BATCH))).scalars().all()
        inbounds = [inbound_from_payload(p) for p in payloads]
        inbounds = [i for i in inbounds if (i.channel, i.event_id) not in self._in_hand]
        if inbounds:
            await self._handle_in_order(inbounds)
        return len(payloads)

    def adopt(self) -> None:
        """Handle soon whatever is stored and not handled: this instance has just become the
        leader, and the one before may have died with updates it had stored (and told the
        messenger it had) but not handled. An update another live instance is handling at
        the same moment is handled once all the same (the dispatcher's record decides)."""
        if self._sweeper is not None and not self._stopping:
            self._backlog.set()

    async def sweep_stale(self, older_than: timedelta) -> bool:
        """Sweep soon when an update has waited unhandled longer than older_than (an instance
        that took it in by webhook died before handling it); return whether one had."""
        cutoff = self.clock.now() - older_than
        async with self.sessions() as session:
            stale = (await session.execute(
                select(InboxItem.id).where(InboxItem.processed_at.is_(None),
                                           InboxItem.received_at < cutoff).limit(1))).first()
        if stale is not None:
            self.adopt()
        return stale is not None

    async def _sweep_loop(self) -> None:
        """Sweep at start, and whenever handling was deferred, until nothing is left."""
        delay = self.sweep_seconds
        while not self._stopping:
            await self._backlog.wait()
            if self._stopping:
                break
            self._backlog.clear()
            try:
                found = await self._sweep()
            except Exception as exc:
                _LOGGER.warning("Stored updates wait for the database (%s)", type(exc).__name__)
                self._backlog.set()
                found = 0
            if not self._backlog.is_set():
                delay = self.sweep_seconds
                if found >= SWEEP_BATCH:
                    self._backlog.set()
                continue
            with contextlib.suppress(TimeoutError):  # the database is away: try again soon
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, 5.0)

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sweeper; it first handles what the last run left."""
        self._stopping = False
        self._stop.clear()
        self._backlog.set()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="inbox-sweeper")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop sweeping and let updates being handled finish (they are never cut midway).

        Whatever is still unhandled at the deadline stays stored for the next start.
        """
        self._stopping = True
        self._stop.set()
        self._backlog.set()
        waiting = [t for t in (self._sweeper, *self._tasks) if t is not None]
        if waiting:
            _done, pending = await asyncio.wait(waiting, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._sweeper = None
