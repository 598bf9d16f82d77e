"""/readyz and /metrics (#15, part 3): ready while alerts go out, 503 once one has waited too
long with Telegram down; the Prometheus series named in the issue; a token or this machine."""

from __future__ import annotations

import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.app import App
from tests.auxil.console import file_case
from tests.auxil.helpers import eventually
from tests.auxil.people import LIAISON_HX, OFFICER_HX, Chat, link_everyone
from tests.conftest import make_settings


async def _get(app: App, path: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{app.http_port}{path}", headers=headers) as resp:
        return resp.status, await resp.text()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_readyz_goes_503_when_an_alert_waits_with_telegram_down(
        app, directory, sessions, clock, fake_telegram):
    await link_everyone(sessions, clock)
    status, _ = await _get(app, "/readyz")
    assert status == 200
    fake_telegram.outage()
    await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    app.worker.wake()

    async def paused() -> bool:
        return app.worker.state("telegram", clock.now())[0] == "paused"
    await eventually(paused)
    status, body = await _get(app, "/readyz")
    assert status == 200, body  # the alert has only just been queued
    telegram = json.loads(body)["channels"]["telegram"]
    assert telegram["state"] == "paused" and telegram["reason"] == "unreachable"
    assert "until" in telegram
    clock.advance(61)  # … and now it has waited more than a minute
    status, body = await _get(app, "/readyz")
    assert status == 503
    ready = json.loads(body)
    assert ready["status"] == "not_ready" and ready["database"] == "ok"
    assert ready["oldest_alert_seconds"] > 60 and ready["outbox"]["alert"] >= 1
    assert ready["channels"]["web"] == {"state": "up"}

    # The same picture in Prometheus' terms.
    status, text = await _get(app, "/metrics")
    assert status == 200
    samples = _samples(text)
    assert samples[("safeschool_oldest_pending_alert_seconds", ())] > 60
    assert samples[("safeschool_outbox_depth", (("channel", "telegram"),
                                                ("lane", "alert")))] >= 1
    assert samples[("safeschool_transient_errors_total", (("channel", "telegram"),))] >= 1
    assert samples[("safeschool_channel_up", (("channel", "web"),))] == 1
    assert sum(v for (name, _), v in samples.items()
               if name == "safeschool_alerts_unacknowledged") == 1
    assert samples[("safeschool_leader", ())] == 1


async def test_metrics_count_what_came_in_and_went_out(app, directory, sessions, clock,
                                                       fake_telegram):
    await link_everyone(sessions, clock)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.say("/help")
    samples = _samples((await _get(app, "/metrics"))[1])
    assert samples[("safeschool_inbound_updates_total", (("channel", "telegram"),))] == 1
    assert samples[("safeschool_messages_sent_total", (("channel", "telegram"),
                                                       ("lane", "reply")))] >= 1
    assert samples[("safeschool_send_seconds_count", (("channel", "telegram"),
                                                      ("lane", "reply")))] >= 1
    assert samples[("safeschool_cases_past_target", ())] == 0
    assert ("safeschool_rate_limited_total", (("channel", "telegram"),)) not in samples


async def test_readyz_and_metrics_need_the_token_when_one_is_set(
        database_url, fake_telegram, clock, tmp_path):
    app = App(make_settings(database_url, fake_telegram, media_dir=tmp_path / "media",
                            metrics_token="s3cret-scrape-token"), clock)
    await app.start()
    try:
        for path in ("/readyz", "/metrics"):
            assert (await _get(app, path))[0] == 401
            assert (await _get(app, path, Authorization="Bearer wrong"))[0] == 401
            assert (await _get(app, path, Authorization="Bearer s3cret-scrape-token"))[0] \
                == 200
        assert (await _get(app, "/healthz"))[0] == 200  # liveness stays open
    finally:
        await app.stop()
