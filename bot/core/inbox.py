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
import logging
from collections import defaultdict
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


class Inbox:
    """Stores inbound updates first, then hands them to the dispatcher, in order per chat."""

    def __init__(self, sessions: async_sessionmaker, dispatcher: Dispatcher, clock: Clock, *,
                 sweep_seconds: float = 1.0, metrics: Metrics | None = None) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.clock = clock
        self.sweep_seconds = sweep_seconds
        self._dialect = sessions.kw["bind"].dialect.name
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

        async def store() -> list[Inbound]:
            new: list[Inbound] = []
            async with self.sessions() as session, session.begin():
                for inbound in items:
                    if await self._insert(session, inbound.channel, inbound.event_id,
                                          inbound_to_payload(inbound), now, None):
                        new.append(inbound)
                for channel, event_id in skipped:
                    # Kept so the id is known; handled as done: there is nothing to handle.
                    await self._insert(session, channel, event_id, {"unreadable": True}, now,
                                       now)
            return new

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

    async def _insert(self, session: Any, channel: str, event_id: str, payload: dict[str, Any],
                      now: Any, processed: Any) -> bool:
        stmt = db.upsert_insert(self._dialect, InboxItem).values(
            channel=channel, event_id=event_id, inbound=payload, received_at=now,
            processed_at=processed,
        ).on_conflict_do_nothing(index_elements=["channel", "event_id"])
        return (await session.execute(stmt)).rowcount == 1

    # ---- handling ------------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_in_order(self, inbounds: list[Inbound]) -> None:
        """Handle a batch: chats side by side, each chat's updates one after another."""
        by_chat: dict[tuple[str, str], list[Inbound]] = defaultdict(list)
        for inbound in inbounds:
            by_chat[(inbound.channel, inbound.external_id)].append(inbound)
        await asyncio.gather(*(self._handle_chat(chat) for chat in by_chat.values()))

    async def _handle_chat(self, inbounds: list[Inbound]) -> None:
        for inbound in inbounds:
            key = (inbound.channel, inbound.event_id)
            if key in self._in_hand:
                continue
            self._in_hand.add(key)
            try:
                await self.dispatcher.handle(inbound, from_inbox=True)
            except Deferred:
                # The database is away: this and the chat's later updates wait for the sweep.
                self._backlog.set()
                return
            except Exception:  # the dispatcher answers errors itself; this is a last guard
                _LOGGER.exception("An inbound %s update could not be handled", inbound.channel)
                self._backlog.set()
                return
            finally:
                self._in_hand.discard(key)

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
