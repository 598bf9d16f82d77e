"""Who runs the clock jobs (escalation, campaigns, reports, retention) and polls the messengers
when several instances share one database.

PostgreSQL: the instance holding a session-level advisory lock on a connection of its own.
It proves it is alive by a query every third of `timeout`; the server ends a session idle
longer than `timeout` (a frozen leader), and a killed leader's connection closes at once,
so the lock passes to another instance within `timeout`. An instance that cannot reach its
lock's connection stops leading before anything else.

SQLite: one process only. A lock file beside the database keeps a second one away, with one
sentence (SecondInstance).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import db

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
LOCK_KEY = 0x5AFE5C00  # the advisory lock's number: "SAFESCHOOL"
MIGRATION_KEY = LOCK_KEY + 1  # held while one instance migrates; the others wait for it


class SecondInstance(Exception):
    """Another process already runs on this SQLite database."""


class Leadership:
    """Whether this instance leads; waits for it; gives it up on stop."""

    def __init__(self, engine: AsyncEngine, url: str, timeout: float = 30.0,
                 on_change: Callable[[bool], None] = lambda _leading: None) -> None:
        self.engine = engine
        self.url = url
        self.timeout = timeout
        self.on_change = on_change
        self._leading = asyncio.Event()
        self._stopping = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._file: IO[Any] | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this instance leads now."""
        return self._leading.is_set()

    async def wait(self) -> None:
        """Return once this instance leads (at once when it does)."""
        await self._leading.wait()

    def _set(self, leading: bool, *, stopping: bool = False) -> None:
        if leading == self.is_leader:
            return
        if leading:
            self._leading.set()
            _LOGGER.info("This instance leads: it runs the clock jobs and polls the messengers")
        else:
            self._leading.clear()
            if stopping:  # asked to: nothing for an operator to look into
                _LOGGER.info("This instance hands leadership on as it stops")
            else:
                _LOGGER.warning("This instance no longer leads")
        self.on_change(leading)

    async def alone(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run work while no other instance runs it (migrations at start)."""
        if self.engine.dialect.name != "postgresql":
            return await work()
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_KEY})
            try:
                return await work()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": MIGRATION_KEY})

    async def start(self) -> None:
        """SQLite: take the file lock or raise SecondInstance. PostgreSQL: start trying."""
        if self.engine.dialect.name == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                path = Path(f"{database}.lock")
                handle = await asyncio.to_thread(path.open, "a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    raise SecondInstance(database) from None
                self._file = handle
            self._set(True)
            return
        self._stopping.clear()
        await self._try()  # lead at once when nobody else does
        self._task = asyncio.create_task(self._keep(), name="leadership")

    async def _try(self) -> None:
        """One round: take the lock if free, or prove the held one is still ours."""
        try:
            if self._conn is None:
                conn = await self.engine.connect()
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                self._conn = conn
                # A frozen leader's session ends after `timeout` idle: the lock passes on
                # (PostgreSQL 14 and later; an older server frees it when the TCP connection
                # is seen dead).
                try:
                    await conn.execute(text(
                        f"SET idle_session_timeout = {int(self.timeout * 1000)}"))
                except Exception as exc:
                    if db.is_transient(exc):
                        raise
                    _LOGGER.warning("This PostgreSQL cannot end a frozen leader's session "
                                    "(%s); failover waits for the connection to drop",
                                    type(exc).__name__)
            if self.is_leader:
                await asyncio.wait_for(self._conn.execute(text("SELECT 1")), self.timeout / 3)
            else:
                got = (await self._conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                {"key": LOCK_KEY})).scalar_one()
                self._set(bool(got))
        except Exception as exc:
            _LOGGER.warning("The leadership connection failed (%s)", type(exc).__name__)
            self._set(False)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _keep(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.timeout / 3)
            if self._stopping.is_set():
                break
            await self._try()

    async def stop(self) -> None:
        """Give leadership up (another instance takes it within a round)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._conn is not None and self.is_leader:
            with contextlib.suppress(Exception):
                await self._conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": LOCK_KEY})
        self._set(False, stopping=True)
        await self._drop()
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
