"""Webhook mode on Telegram: the health check (the per-messenger promises are in
test_webhooks.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app import App
from bot.core.clock import FakeClock
from tests.auxil.fake_telegram import FakeTelegram
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


async def test_health_check_reports_the_database(webhook_app: App) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{webhook_app.http_port}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"status": "ok", "database": "ok",
                                       "channels": ["telegram", "web"], "waiting": [],
                                       "restarts": {"telegram": 0, "web": 0}}
