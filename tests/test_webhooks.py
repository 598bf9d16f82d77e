"""Webhook mode, the same promises on every messenger: the secret is checked before anything
is read or stored; an update is stored before it is acknowledged; a redelivery is answered
once; a delivery acknowledged just before a crash is answered after the restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.settings import Settings
from storage.models import InboxItem, Outbox
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.fake_zalo import FakeZalo
from tests.auxil.helpers import count, eventually
from tests.auxil.payloads import telegram_message, zalo_message
from tests.conftest import make_settings

SECRET = "hook-Secret_0123456789"


@dataclass
class Hook:
    """One messenger's webhook, as the tests drive it."""

    name: str
    path: str
    header: str
    update: Callable[[int, str], dict[str, Any]]  # (n, text) -> a delivery from one user
    texts: Callable[[], list[str]]  # what that user received
    wrap: Callable[[dict[str, Any]], dict[str, Any]]  # the same delivery, as resent
    settings: Callable[[str], Settings]
    registered: Callable[[], tuple[str | None, str | None]]  # (url, secret) the messenger got

    async def post(self, app: App, body: Any, secret: str | None) -> int:
        headers = {self.header: secret} if secret is not None else {}
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{app.http_port}{self.path}", json=body,
                headers=headers) as resp:
            return resp.status


@pytest.fixture(params=["telegram", "zalo"])
def hook(request: pytest.FixtureRequest, database_url: str, fake_telegram: FakeTelegram,
         fake_zalo: FakeZalo) -> Hook:
    if request.param == "telegram":
        return Hook(
            "telegram", "/tg/hook", "X-Telegram-Bot-Api-Secret-Token",
            update=lambda n, text: telegram_message(1000 + n, 802, text),
            texts=lambda: fake_telegram.texts(802), wrap=lambda body: body,
            settings=lambda url: make_settings(
                url, fake_telegram, telegram_webhook_url="https://bot.example.org/tg/hook",
                telegram_webhook_secret=SECRET),
            registered=lambda: next(((c.params["url"], c.params["secret_token"])
                                     for c in fake_telegram.calls if c.method == "setWebhook"),
                                    (None, None)))
    return Hook(
        "zalo", "/zalo/hook", "X-Bot-Api-Secret-Token",
        update=lambda n, text: zalo_message(f"dup-{n}", "z-hook", text),
        texts=lambda: fake_zalo.texts("z-hook"),
        wrap=lambda body: {"ok": True, "result": body},  # as Zalo's documentation shows it
        settings=lambda url: make_settings(
            url, fake_telegram, zalo=fake_zalo,
            zalo_webhook_url="https://bot.example.org/zalo/hook", zalo_webhook_secret=SECRET),
        registered=lambda: (fake_zalo.webhook_url, fake_zalo.webhook_secret))


@pytest.fixture
async def webhook_app(hook: Hook, database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    application = App(hook.settings(database_url), clock)
    await application.start()
    yield application
    await application.stop()


async def test_the_webhook_is_registered_with_its_secret(hook: Hook, webhook_app: App) -> None:
    url, secret = hook.registered()
    assert url == f"https://bot.example.org{hook.path}" and secret == SECRET


async def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_stored(
        hook: Hook, webhook_app: App, sessions) -> None:
    assert await hook.post(webhook_app, hook.update(1, "/help"), "wrong-secret") == 403
    assert await hook.post(webhook_app, hook.update(2, "/help"), None) == 403
    # A good delivery after them is answered: the refused ones had their chance to be stored.
    assert await hook.post(webhook_app, hook.update(3, "/help"), SECRET) == 200
    await eventually(lambda: len(hook.texts()) == 1)
    assert await count(sessions, InboxItem) == 1
    assert await count(sessions, Outbox) == 1


async def test_a_body_that_is_not_an_update_is_refused(hook: Hook, webhook_app: App,
                                                       sessions) -> None:
    assert await hook.post(webhook_app, ["not", "an", "update"], SECRET) == 400
    assert await count(sessions, InboxItem) == 0


async def test_an_update_is_answered_once_even_if_redelivered(
        hook: Hook, webhook_app: App, sessions) -> None:
    first = hook.update(4, "/help")
    assert await hook.post(webhook_app, first, SECRET) == 200
    assert await hook.post(webhook_app, hook.wrap(first), SECRET) == 200  # delivered again
    assert await hook.post(webhook_app, hook.wrap(hook.update(5, "/me")), SECRET) == 200
    await eventually(lambda: len(hook.texts()) >= 2)
    texts = hook.texts()
    assert "111" in texts[0] and "chưa đăng ký" in texts[1]
    assert await count(sessions, InboxItem) == 2  # the redelivery found its first row
    assert await count(sessions, Outbox) == 2


async def test_a_delivery_acknowledged_just_before_a_crash_is_answered_after_restart(
        hook: Hook, database_url: str, sessions, clock: FakeClock) -> None:
    first = App(hook.settings(database_url), clock)
    await first.start()
    never = asyncio.Event()

    async def dies_before_handling(_inbound: Any, **_kw: Any) -> bool:
        await never.wait()
        return True

    first.dispatcher.handle = dies_before_handling  # type: ignore[method-assign]
    delivery = hook.update(6, "/help")
    assert await hook.post(first, delivery, SECRET) == 200  # the messenger will not resend
    await first.inbox.stop(drain_seconds=0)  # the process dies here
    await first.stop()
    assert hook.texts() == []
    assert await count(sessions, InboxItem, InboxItem.processed_at.is_(None)) == 1

    second = App(hook.settings(database_url), clock)
    await second.start()  # replays the stored delivery
    try:
        await eventually(lambda: len(hook.texts()) == 1)
        assert "111" in hook.texts()[0]
        assert await count(sessions, InboxItem, InboxItem.processed_at.is_(None)) == 0
        assert await hook.post(second, hook.wrap(delivery), SECRET) == 200  # once more
        assert await count(sessions, Outbox) == 1
    finally:
        await second.stop()
