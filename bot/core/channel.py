"""What the core expects of a messenger: how it sends, what it can take, how it fails.

Adapters live in `bot/channels/`; the core (outbox, worker, inbox) knows them only through
this module: the `Channel` protocol, the `Profile` each adapter registers (its text limits
and how it shows choices), the errors a send may raise, and `departing()`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from bot.core.messages import Inbound, Outbound

# What a channel calls with what it received: store these updates (and the ids of updates it
# could not read) before acknowledging them; raises when they could not be stored.
Accept = Callable[[Iterable[Inbound], Iterable[tuple[str, str]]], Awaitable[int]]


def _as_is(message: Outbound) -> Outbound:
    return message


@dataclass(frozen=True)
class Profile:
    """What one messenger can take. The outbox fits each message to the recipient's channel
    before it is queued (so every part is stored, retried and recorded on its own)."""

    name: str
    text_limit: int
    caption_limit: int
    # How the messenger shows choices: as they are (buttons), or folded into the text.
    fit: Callable[[Outbound], Outbound] = _as_is
    # Whether a bot can upload a file (a workbook, a picture); if not, only a public URL.
    uploads: bool = False
    # Whether the messenger shows a per-chat menu of commands the bot sets (Telegram).
    commands: bool = False


# The command menu of someone who has not joined (each has a `command.NAME` description).
STRANGER_COMMANDS = ("start", "help", "language")
# The language of the messenger-wide menu those people see unless their app is in English.
STRANGER_MENU_LANGUAGE = "vi"

# For a channel whose adapter is not loaded: the smallest limits of the messengers we know.
FALLBACK = Profile("?", text_limit=2000, caption_limit=1024)
_PROFILES: dict[str, Profile] = {}


def register_profile(profile: Profile) -> None:
    """Called by each adapter module when it is imported."""
    _PROFILES[profile.name] = profile


def profile_of(channel: str) -> Profile:
    """What channel can take (the conservative fallback for one not loaded)."""
    return _PROFILES.get(channel, FALLBACK)


def smallest_text_limit() -> int:
    """The shortest message every known messenger takes, text or caption."""
    return min(min(p.text_limit, p.caption_limit) for p in (FALLBACK, *_PROFILES.values()))


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

    def pace(self, chat_id: str, priority: int = 0) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a place in the messenger's limits while one message to chat_id is sent."""
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


# Set by Pacer.slot while a send is made: the channel awaits it just before the request is
# written, and that is when the send takes its place in the bot's window.
DEPARTING: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "departing", default=None)


async def departing() -> None:
    """Wait for the bot's budget right before a request leaves (channels call this from the
    last moment before writing a request; outside a paced send it does nothing)."""
    leave = DEPARTING.get()
    if leave is not None:
        await leave()
