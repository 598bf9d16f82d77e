"""What every messenger adapter offers the core, and the errors its sends may raise."""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from aiohttp import web
from aiolimiter import AsyncLimiter
from pydantic import SecretStr

from bot.messages import Inbound, Outbound

# What a channel calls with what it received: store these updates (and the ids of updates it
# could not read) before acknowledging them; raises when they could not be stored.
Accept = Callable[[Iterable[Inbound], Iterable[tuple[str, str]]], Awaitable[int]]


def webhook_secret_ok(request: web.Request, header: str, secret: SecretStr | None) -> bool:
    """Check a webhook's secret header in constant time, before the body is read."""
    given = request.headers.get(header, "")
    return secret is not None and hmac.compare_digest(given.encode(),
                                                      secret.get_secret_value().encode())


class SendError(Exception):
    """A send failed; subclasses tell the worker what to do next."""


class TransientError(SendError):
    """Try again later (network trouble, 5xx, timeouts)."""


class RateLimited(TransientError):
    """The messenger asked us to slow down for retry_after seconds."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message}; retry after {retry_after:g}s")
        self.retry_after = retry_after


class Unreachable(SendError):
    """The person blocked the bot or the chat is gone: stop trying this account."""


class PermanentError(SendError):
    """The message itself is wrong (bad request); retrying cannot help."""


class FatalChannelError(SendError):
    """The channel cannot send anything (e.g. invalid token); an operator must act."""


class Channel(Protocol):
    """A messenger the delivery worker can send through."""

    name: str

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send one message and return the messenger's message id."""
        ...

    async def throttle(self, chat_id: str) -> None:
        """Wait until the messenger's limits allow another message to chat_id."""
        ...

    def chat_ready_in(self, chat_id: str) -> float:
        """Seconds until chat_id may receive another message (0 when it may now)."""
        ...

    async def probe(self) -> None:
        """One cheap call that raises a SendError while the messenger is in trouble."""
        ...

    async def start(self) -> None:
        """Log in and start receiving."""
        ...

    async def stop_receiving(self) -> None:
        """Take no new updates; finish handling the ones already taken."""
        ...

    async def close(self) -> None:
        """Release connections (after the worker has finished its sends)."""
        ...


class RateLimits:
    """Leaky buckets: one for the whole bot, one per chat (and a slower one for groups)."""

    def __init__(self, per_second: float, chat_burst: int, group_per_minute: float,
                 max_chats: int = 10_000) -> None:
        self.overall = AsyncLimiter(per_second, 1)
        self.chat_burst = max(1, chat_burst)
        self.group_per_minute = group_per_minute
        self._chats: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self._max_chats = max_chats

    def _chat(self, chat_id: str, group: bool) -> AsyncLimiter:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            # ~1 message/s per chat with a small burst; groups ~20/min.
            limiter = (AsyncLimiter(self.group_per_minute, 60) if group
                       else AsyncLimiter(self.chat_burst, self.chat_burst))
            self._chats[chat_id] = limiter
            if len(self._chats) > self._max_chats:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return limiter

    def chat_ready_in(self, chat_id: str, group: bool = False) -> float:
        """Seconds until the chat's bucket has room (0 when a message may go now)."""
        limiter = self._chats.get(chat_id)
        if limiter is None or limiter.has_capacity():
            return 0.0
        return 1.0 / (limiter.max_rate / limiter.time_period)

    async def acquire(self, chat_id: str, group: bool = False) -> None:
        """Wait for room in the chat's bucket, then in the overall one."""
        await self._chat(chat_id, group).acquire()
        await self.overall.acquire()
