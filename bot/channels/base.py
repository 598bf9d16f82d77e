"""What the messenger adapters share: one webhook handler, and the long poll's stop."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import SecretStr

_LOGGER = logging.getLogger(__name__)


class BadPayload(ValueError):
    """A webhook body that is not an update of this messenger (answered 400)."""


def webhook_handler(*, name: str, header: str, secret: SecretStr | None,
                    store: Callable[[Any], Awaitable[None]],
                    ok: Callable[[], web.Response]) -> Callable[[web.Request],
                                                                Awaitable[web.Response]]:
    """Build a messenger's webhook endpoint: the secret header checked before the body is
    read (403), a body that is not JSON or that store refuses with BadPayload (400), and 200
    only once store has kept the update; 503 while it cannot (the messenger delivers again).
    """
    async def handle(request: web.Request) -> web.Response:
        if not webhook_secret_ok(request, header, secret):
            return web.Response(status=403, text="forbidden")
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="bad payload")
        try:
            await store(payload)
        except BadPayload:
            return web.Response(status=400, text="bad payload")
        except Exception as exc:
            _LOGGER.warning("Could not store a %s update (%s); it will be delivered again",
                            name, type(exc).__name__)
            return web.Response(status=503, text="try again")
        return ok()

    return handle


def webhook_secret_ok(request: web.Request, header: str, secret: SecretStr | None) -> bool:
    """Check a webhook's secret header in constant time, before the body is read."""
    given = request.headers.get(header, "")
    return secret is not None and hmac.compare_digest(given.encode(),
                                                      secret.get_secret_value().encode())


async def unless_stopping(work: Awaitable[object],
                          stopping: asyncio.Future[object]) -> asyncio.Future[object] | None:
    """Run work (a long poll) until it finishes or stopping does; None when stopping won.

    A long poll cancelled while it waits has taken nothing, so nothing is lost by it; what it
    returned is handed back whole (done, with its result or error) for the caller to store.
    """
    fetch = asyncio.ensure_future(work)
    await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if fetch.done():
        return fetch
    fetch.cancel()
    with contextlib.suppress(BaseException):
        await fetch
    return None


async def may_poll(leading: Callable[[], Awaitable[None]] | None,
                   stopping: asyncio.Future[object]) -> bool:
    """Wait until this instance may poll (it leads, when several share the database);
    False when the channel stops first."""
    if leading is None:
        return True
    return await unless_stopping(leading(), stopping) is not None


async def supervised(name: str, receive: Callable[[], Awaitable[None]], stopping: asyncio.Event,
                     *, on_restart: Callable[[], None] = lambda: None,
                     first: float = 1.0, most: float = 60.0) -> None:
    """Run a channel's receiving loop; when it dies of an error nobody expected, log that (the
    error's type only: never an update's content) and run it again after a backoff, until the
    channel stops. Intake must never go deaf until a restart."""
    delay = first
    while not stopping.is_set():
        try:
            await receive()
            return  # it ended on purpose: stopping, or a token the messenger rejected
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_restart()
            _LOGGER.error("%s intake stopped on %s; starting it again in %.0f s", name,
                          type(exc).__name__, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, most)
