"""What every loopback fake shares: an aiohttp server on 127.0.0.1:0 and waiting on its calls."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    """One request a fake received."""

    method: str
    params: dict[str, Any]


@dataclass
class LoopbackServer(ABC):
    """Base of the fakes: start, close, and wake waiters whenever a call is recorded."""

    calls: list[Call] = field(default_factory=list)
    keep_calls: bool = True  # a benchmark turns this off so the fake's memory stays flat
    port: int = 0
    _changed: asyncio.Condition | None = None
    _closing: asyncio.Event | None = None
    _runner: web.AppRunner | None = None

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the fake's routes."""

    async def start(self) -> None:
        """Listen on an ephemeral loopback port."""
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        """Release waiting requests and stop listening."""
        assert self._closing is not None
        self._closing.set()
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until predicate holds, re-checking after every call; fail after timeout."""
        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    def record(self, call: Call) -> None:
        """Remember a call (unless told not to)."""
        if self.keep_calls:
            self.calls.append(call)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _long_poll(self, ready: Callable[[], bool], timeout: float) -> None:
        """Hold a request until ready() or the timeout or the fake closes."""
        assert self._changed is not None and self._closing is not None
        closing = self._closing
        if ready() or closing.is_set() or timeout <= 0:
            return
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: ready() or closing.is_set())
        except TimeoutError:
            pass
