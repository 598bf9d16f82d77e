"""One messenger down at start never takes the others down: it is retried in the background,
its messages wait, and only what an operator must fix stops the app (one sentence)."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import App
from bot.core.channel import FatalChannelError
from bot.core.clock import FakeClock
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.fake_zalo import FakeZalo
from tests.auxil.helpers import eventually
from tests.conftest import make_settings


async def _health(app: App) -> dict:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{app.http_port}/healthz") as resp:
        return await resp.json()


async def test_zalo_unreachable_at_start_leaves_telegram_running_and_joins_later(
        database_url: str, fake_telegram: FakeTelegram, fake_zalo: FakeZalo,
        clock: FakeClock) -> None:
    fake_zalo.fail("getMe", status=502, error_code=502, times=2, description="Bad Gateway")
    app = App(make_settings(database_url, fake_telegram, zalo=fake_zalo), clock)
    await app.start()  # does not raise: Telegram officers must still get their alerts
    try:
        assert (await _health(app))["waiting"] == ["zalo"]
        fake_telegram.user_message(811, "/help")
        await fake_telegram.wait_texts(811, 1)
        fake_zalo.user_text("z-late", "/help")  # waits in Zalo until the channel is up
        await eventually(lambda: fake_zalo.texts("z-late"), timeout=15)
        assert "111" in fake_zalo.texts("z-late")[0]
        assert (await _health(app))["waiting"] == []
        assert sum(c.method == "getMe" for c in fake_zalo.calls) == 3
    finally:
        await app.stop()


async def test_telegram_unreachable_at_start_leaves_zalo_running(
        database_url: str, fake_telegram: FakeTelegram, fake_zalo: FakeZalo,
        clock: FakeClock) -> None:
    await fake_telegram.go_down("500")
    app = App(make_settings(database_url, fake_telegram, zalo=fake_zalo), clock)
    await app.start()
    try:
        assert (await _health(app))["waiting"] == ["telegram"]
        fake_zalo.user_text("z-early", "/help")
        await eventually(lambda: fake_zalo.texts("z-early"))
        await fake_telegram.come_back()
        fake_telegram.user_message(812, "/help")
        await fake_telegram.wait_texts(812, 1, timeout=15)
    finally:
        await app.stop()


async def test_a_webhook_url_the_messenger_refuses_is_one_sentence(
        database_url: str, fake_telegram: FakeTelegram, fake_zalo: FakeZalo,
        clock: FakeClock) -> None:
    settings = make_settings(database_url, fake_telegram, zalo=fake_zalo,
                             zalo_webhook_url="http://bot.example.org/zalo/hook",
                             zalo_webhook_secret="zalo-hook-secret-123")
    app = App(settings, clock)
    with pytest.raises(FatalChannelError) as refused:
        await app.start()
    await app.stop()
    assert "SAFESCHOOL_ZALO_WEBHOOK_URL" in str(refused.value)
    assert "https://" in str(refused.value)


async def test_an_intake_that_dies_unexpectedly_is_started_again_and_healthz_shows_it(
        app: App, fake_zalo: FakeZalo, caplog: pytest.LogCaptureFixture) -> None:
    zalo = app.channels["zalo"]
    real_call = zalo.call
    broken = {"left": 1}

    async def call(method: str, *args, **kwargs):
        if method == "getUpdates" and broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("a bug nobody foresaw")
        return await real_call(method, *args, **kwargs)

    zalo.call = call  # type: ignore[method-assign]
    # The running poll ends on its own (a long poll with nothing to read); the next one dies.
    await eventually(lambda: zalo.restarts == 1, timeout=15)
    fake_zalo.user_text("z-after", "/help")
    await eventually(lambda: fake_zalo.texts("z-after"), timeout=15)
    assert (await _health(app))["restarts"]["zalo"] == 1
    [said] = [r.getMessage() for r in caplog.records if "intake stopped" in r.getMessage()]
    assert "RuntimeError" in said and "a bug nobody foresaw" not in said
