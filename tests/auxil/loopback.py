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
    _site: web.TCPSite | None = None
    down_mode: str | None = None  # a whole-API outage: "500", "hang" or "refuse"

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
        self._site = site
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def go_down(self, mode: str) -> None:
        """Start a whole-API outage: every call answers 500, hangs, or is refused."""
        assert mode in ("500", "hang", "refuse")
        self.down_mode = mode
        if mode == "refuse" and self._site is not None:
            await self._site.stop()  # nothing listens on the port: connections are refused
            self._site = None

    async def come_back(self) -> None:
        """End the outage (hanging calls are answered 500 now; the port listens again)."""
        if self.down_mode == "refuse" and self._runner is not None:
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()
            self._site = site
        self.down_mode = None
        await self._notify()

    async def outage_answer(self) -> web.Response | None:
        """What a call gets during an outage, or None when the API is up."""
        if self.down_mode is None:
            return None
        if self.down_mode == "hang":
            assert self._changed is not None and self._closing is not None
            closing = self._closing
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self.down_mode != "hang" or closing.is_set())
        return web.json_response({"ok": False, "error_code": 500,
                                  "description": "Internal Server Error"}, status=500)

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
