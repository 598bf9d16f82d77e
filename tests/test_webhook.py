"""Webhook mode: the secret header is checked before anything is read or stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app import App
from bot.core.clock import FakeClock
from storage.models import InboundSeen, Outbox
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import count
from tests.conftest import make_settings

SECRET = "hook-Secret_0123456789"


@pytest.fixture
async def webhook_app(database_url: str, fake_telegram: FakeTelegram,
                      clock: FakeClock) -> AsyncIterator[App]:
    settings = make_settings(database_url, fake_telegram,
                             telegram_webhook_url="https://bot.example.org/tg/hook",
                             telegram_webhook_secret=SECRET)
    application = App(settings, clock)
    await application.start()
    yield application
    await application.stop()


def _update(update_id: int, chat_id: int, text: str) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": 5, "date": 1_760_000_000, "text": text,
        "chat": {"id": chat_id, "type": "private"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "Lan"},
        "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}}


async def _post(app: App, body: dict, secret: str | None) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{app.http_port}/tg/hook", json=body, headers=headers) as resp:
        return resp.status


async def test_webhook_is_registered_with_its_secret(
        webhook_app: App, fake_telegram: FakeTelegram) -> None:
    [call] = [c for c in fake_telegram.calls if c.method == "setWebhook"]
    assert call.params["url"] == "https://bot.example.org/tg/hook"
    assert call.params["secret_token"] == SECRET
    assert not any(c.method == "getUpdates" for c in fake_telegram.calls)


async def test_wrong_or_missing_secret_is_rejected_and_nothing_is_stored(
        webhook_app: App, fake_telegram: FakeTelegram, sessions) -> None:
    assert await _post(webhook_app, _update(1, 801, "/help"), "wrong-secret") == 403
    assert await _post(webhook_app, _update(2, 801, "/help"), None) == 403
    assert await count(sessions, InboundSeen) == 0
    assert await count(sessions, Outbox) == 0


async def test_update_with_the_right_secret_is_answered_once_even_if_redelivered(
        webhook_app: App, fake_telegram: FakeTelegram, sessions) -> None:
    body = _update(3, 802, "/help")
    assert await _post(webhook_app, body, SECRET) == 200
    assert await _post(webhook_app, body, SECRET) == 200  # Telegram retried
    # A later update from the same chat is handled after the retry (one lock per chat).
    assert await _post(webhook_app, _update(4, 802, "/me"), SECRET) == 200
    texts = await fake_telegram.wait_texts(802, 2)
    assert "111" in texts[0] and "chưa đăng ký" in texts[1]
    assert await count(sessions, InboundSeen) == 2
    assert await count(sessions, Outbox) == 2


async def test_health_check_reports_the_database(webhook_app: App) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{webhook_app.http_port}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"status": "ok", "database": "ok",
                                       "channels": ["telegram"]}
