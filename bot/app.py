"""The application factory: one object that owns the database, channels, worker and server."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from bot.channels.telegram import TelegramChannel
from bot.channels.web import WebChannel
from bot.channels.zalo import ZaloChannel
from bot.core.channel import Channel, FatalChannelError, TransientError
from bot.core.clock import Clock
from bot.core.dispatch import Dispatcher
from bot.core.i18n import Translator
from bot.core.inbox import Inbox
from bot.core.messages import Inbound
from bot.core.metrics import Metrics, lane
from bot.core.settings import Settings
from bot.core.worker import DeliveryWorker
from bot.services import health, outreach, retention
from bot.services.cases import alert_unreachable
from bot.services.codes import USERNAME_KEY
from bot.services.health import Snapshot
from bot.services.stat_reports import ReportBuilder, queue_closed_periods
from bot.services.timing import QuietHours
from bot.web import console_app
from bot.web.base import Deps
from handlers import build_router
from schedules import build_scheduler
from schedules.campaigns import campaign_tick
from schedules.escalation import tick as escalation_tick
from storage import crypto, db
from storage.leader import Leadership
from storage.media import forget_old_uploads, keep_remote_media
from storage.models import KeyValue

_LOGGER = logging.getLogger(__name__)
START_RETRY_FIRST = 1.0  # seconds before a channel that could not start is tried again
START_RETRY_MAX = 60.0
LOOPBACK = ("127.0.0.1", "::1")  # who may read /readyz and /metrics without a token
JOB_GRACE = 30.0  # seconds stop() gives a running scheduler job to finish
T = TypeVar("T")


class ConfigError(Exception):
    """The settings cannot work; `text(t)` says what to change (str() is the English)."""

    def __init__(self, key: str, **values: object) -> None:
        self.key, self.values = key, values
        super().__init__(self.text(Translator("en")))

    def text(self, t: Translator) -> str:
        """The sentence in t's language."""
        return t(f"config.problem.{self.key}", **self.values)


def use_data_keys(settings: Settings) -> None:
    """Configure encryption at rest with the settings' keys (DataKeyError when malformed)."""
    keys = settings.data_keys.get_secret_value() if settings.data_keys else None
    crypto.configure(crypto.parse_keys(keys))
    relay = settings.relay_key.get_secret_value() if settings.relay_key else None
    crypto.configure_relay(crypto.parse_relay_key(relay))


def _secret(value: SecretStr | None) -> str:
    """A secret setting's value ("" when unset or left empty, as env.example leaves it)."""
    return value.get_secret_value().strip() if value is not None else ""


def check_settings(settings: Settings) -> None:
    """Refuse settings that cannot run, with one sentence an operator can act on."""
    if settings.telegram_token is None and settings.zalo_token is None and \
            not settings.web_chat:
        raise ConfigError("no_token")
    if not _secret(settings.data_keys):  # a bot takes reports: it must be able to encrypt them
        raise ConfigError("no_data_keys")
    if not _secret(settings.relay_key):  # and link an anonymous report to its reporter
        raise ConfigError("no_relay_key")
    for name in ("telegram", "zalo"):
        if getattr(settings, f"{name}_webhook_url") and \
                getattr(settings, f"{name}_webhook_secret") is None:
            raise ConfigError("webhook_secret", channel=name.upper())
    secret = settings.zalo_webhook_secret
    if secret is not None and not 8 <= len(secret.get_secret_value()) <= 256:
        raise ConfigError("zalo_secret_length")


class App:
    """SafeSchool Link, assembled from settings; nothing starts until start()."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        use_data_keys(settings)
        self.clock = clock or Clock()
        self.engine = db.create_engine(settings.database_url)
        self.sessions = db.sessionmaker(self.engine)
        self.channels: dict[str, Channel] = {}
        self.quiet = QuietHours.parse(settings.quiet_hours, settings.tz)
        self.metrics = Metrics()
        self.leadership = Leadership(
            self.engine, settings.database_url, settings.leader_timeout,
            on_change=self._leading)
        self.worker = DeliveryWorker(
            self.sessions, self.channels, self.clock,
            concurrency=settings.outbox_concurrency, max_attempts=settings.outbox_max_attempts,
            give_up_after=timedelta(hours=settings.outbox_give_up_hours),
            lease_seconds=settings.outbox_lease_seconds, on_unreachable=alert_unreachable,
            quiet=self.quiet.is_quiet, metrics=self.metrics)
        self.dispatcher = Dispatcher(self.sessions, build_router(), settings, self.clock,
                                     on_commit=self.worker.wake)
        self.inbox = Inbox(self.sessions, self.dispatcher, self.clock, metrics=self.metrics)
        if settings.telegram_token is not None:
            self.channels["telegram"] = TelegramChannel(settings, self.inbox.accept)
        if settings.zalo_token is not None:
            self.channels["zalo"] = ZaloChannel(settings, self.inbox.accept)
        if settings.web_chat:
            self.channels["web"] = WebChannel(settings, self.inbox.accept, self.sessions,
                                              self.clock)
        self.readers = db.create_engine(settings.database_url, read_only=True)
        self.reports = ReportBuilder(self.sessions, settings, self.clock.now,
                                     db.sessionmaker(self.readers))
        self._jobs: set[asyncio.Task[object]] = set()  # scheduler jobs running now
        self._stopped = False
        self.scheduler = build_scheduler(self.sessions, self.clock, settings.timezone,
                                         self._job(self.media_tick),
                                         self._job(self.case_tick),
                                         self._job(self.campaign_tick),
                                         settings.case_tick_seconds,
                                         self._job(self.report_tick),
                                         self._job(self.period_tick),
                                         self._job(self.reports.forget_expired),
                                         self._job(self.retention_tick),
                                         self._job(self.outreach_tick))
        self._runner: web.AppRunner | None = None
        self.waiting: dict[str, asyncio.Task[None]] = {}  # channels still being started
        self.http_port: int | None = None

    def _leading(self, leading: bool) -> None:
        """Leadership came or went. A new leader adopts what the one before stored and did
        not handle (the poller stored it and told the messenger so; nobody else will)."""
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.inbox.adopt()

    def _job(self, work: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T | None]]:
        """A scheduler job that runs on the leader only (several instances share one
        database), and that stop() waits for: a job cut off mid-query by the engine's
        disposal would leave its task waiting forever."""
        async def run() -> T | None:
            if not self.leadership.is_leader:
                return None
            task = asyncio.current_task()
            assert task is not None
            self._jobs.add(task)
            try:
                return await work()
            finally:
                self._jobs.discard(task)
        return run

    async def tick(self) -> dict[str, int]:
        """Run the case clock and the campaign clock once; send what they queued."""
        done = await self.case_tick()
        done["campaign"] = await self.campaign_tick()
        return done

    async def case_tick(self) -> dict[str, int]:
        """Run the case clock once (escalations, reminders, dead-message reports)."""
        done = await escalation_tick(self.sessions, self.clock, self.settings)
        # An update another instance took in by webhook and died before handling.
        await self.inbox.sweep_stale(timedelta(seconds=2 * self.settings.leader_timeout))
        if any(done.values()):
            self.worker.wake()
        return done

    async def media_tick(self) -> int:
        """Keep our own copy of attachments (Zalo's URLs, Telegram's file ids once Telegram
        is up) and delete console uploads nobody applied; return how many files were kept."""
        resolvers = {name: channel.file_url for name, channel in self.channels.items()
                     if isinstance(channel, TelegramChannel) and name not in self.waiting}
        kept = await keep_remote_media(self.sessions, Path(self.settings.media_dir),
                                       resolvers=resolvers)
        await asyncio.to_thread(forget_old_uploads, Path(self.settings.media_dir))
        return kept

    async def campaign_tick(self) -> int:
        """Open due campaign runs and queue their audience."""
        try:
            return await campaign_tick(self.sessions, self.clock, self.settings, self.quiet,
                                       self.worker.wake)
        except Exception:
            _LOGGER.exception("The campaign clock failed; it runs again next tick")
            return 0

    async def retention_tick(self) -> retention.Plan | None:
        """Remove what has been kept long enough (bot/services/retention.py)."""
        try:
            return await retention.run(self.sessions, retention.Policy.of(self.settings),
                                       self.clock.now(), Path(self.settings.media_dir))
        except Exception:
            _LOGGER.exception("Retention failed; it runs again tomorrow (or on the next start)")
            return None

    async def outreach_tick(self) -> int:
        """Count the awareness messages sent since the last count (bot/services/outreach.py)."""
        try:
            return await outreach.roll_up(self.sessions, cutoff=self.settings.report_cutoff_day,
                                          tz=self.settings.tz)
        except Exception:
            _LOGGER.exception("The outreach count failed; it runs again next minute")
            return 0

    async def report_tick(self) -> int:
        """Build the statistics reports waiting to be built, and send them."""
        try:
            built = await self.reports.run_pending()
        except Exception:
            _LOGGER.exception("The report clock failed; it runs again next tick")
            return 0
        if built:
            self.worker.wake()
        return built

    async def period_tick(self) -> int:
        """Ask for the reports of periods that have closed (once each), then build them."""
        try:
            async with self.sessions() as session, session.begin():
                queued = await queue_closed_periods(session, self.settings, self.clock.now())
        except Exception:
            _LOGGER.exception("The period clock failed; it runs again next tick")
            return 0
        if queued:
            _LOGGER.info("%d periodic statistics report(s) to send", queued)
            await self.report_tick()
        return queued

    async def handle_inbound(self, inbound: Inbound) -> None:
        """Feed one normalised message into the core, stored first like any update."""
        await self.inbox.accept([inbound], [])

    def http_app(self) -> web.Application:
        """Build the aiohttp app: health check and the channels' webhooks."""
        app = web.Application(client_max_size=1024**2)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/reports/{token}/{name}", self._report_file)
        app.add_subapp("/console", console_app(Deps(
            self.sessions, db.sessionmaker(self.readers), self.settings, self.clock,
            self.worker.wake, self.worker.paused)))
        for channel in self.channels.values():
            routes = getattr(channel, "routes", None)
            if routes is not None:
                app.add_routes(routes())
        return app

    async def _report_file(self, request: web.Request) -> web.StreamResponse:
        """A statistics report's chart or workbook, by its unguessable token, while the link
        lasts; otherwise 404 (the same for a wrong token as for an expired one)."""
        found = await self.reports.file(request.match_info["token"], request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="This link has expired or does not exist.")
        path, content_type = found
        disposition = "inline" if content_type.startswith("image/") else "attachment"
        return web.FileResponse(path, headers={
            "Content-Type": content_type, "Cache-Control": "private, no-store",
            "Content-Disposition": f'{disposition}; filename="{path.name}"'})

    async def _healthz(self, _request: web.Request) -> web.Response:
        try:
            await db.check_connection(self.engine)
        except db.DatabaseUnavailable:
            return web.json_response({"status": "error", "database": "unavailable"}, status=503)
        return web.json_response({"status": "ok", "database": "ok",
                                  "channels": sorted(self.channels),
                                  "waiting": sorted(self.waiting),
                                  "restarts": {name: getattr(channel, "restarts", 0)
                                               for name, channel in sorted(self.channels.items())}
                                  })

    def _may_watch(self, request: web.Request) -> bool:
        """/readyz and /metrics: the bearer token when one is set, else this machine only."""
        token = _secret(self.settings.metrics_token)
        if token:
            given = request.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
        return request.remote in LOOPBACK

    async def _observe(self) -> tuple[Snapshot | None, dict[str, dict[str, object]]]:
        """The queue and the channels now (None for the snapshot: the database is away)."""
        now = self.clock.now()
        try:
            async with self.sessions() as session:
                found: Snapshot | None = await health.snapshot(session, now)
        except Exception as exc:
            if not db.is_transient(exc):
                raise
            found = None
        channels: dict[str, dict[str, object]] = {}
        for name in sorted(self.channels):
            state, why, until = ("starting", None, None) if name in self.waiting \
                else self.worker.state(name, now)
            channels[name] = {"state": state, **({"reason": why} if why else {}),
                              **({"until": until.isoformat()} if until else {})}
        return found, channels

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready to take an alert and deliver it: the database answers and no alert has
        waited longer than SAFESCHOOL_READY_ALERT_SECONDS (else 503, with the reason)."""
        if not self._may_watch(request):
            return web.json_response({"status": "forbidden"}, status=401)
        found, channels = await self._observe()
        if found is None:
            return web.json_response({"status": "not_ready", "database": "unavailable",
                                      "channels": channels}, status=503)
        depth: dict[str, int] = {}
        for (_channel, priority), count in found.depth.items():
            depth[lane(priority)] = depth.get(lane(priority), 0) + count
        late = found.oldest_alert_seconds > self.settings.ready_alert_seconds
        return web.json_response({
            "status": "not_ready" if late else "ready", "database": "ok",
            "channels": channels, "outbox": depth,
            "oldest_alert_seconds": round(found.oldest_alert_seconds, 1)},
            status=503 if late else 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        """The Prometheus scrape."""
        if not self._may_watch(request):
            return web.Response(status=401, text="forbidden")
        found, channels = await self._observe()
        m = self.metrics
        for name, state in channels.items():
            m.channel_up.labels(name).set(1 if state["state"] == "up" else 0)
        if found is not None:
            m.outbox_depth.clear()
            for (channel, priority), count in found.depth.items():
                m.outbox_depth.labels(channel, lane(priority)).set(count)
            m.oldest_alert.set(found.oldest_alert_seconds)
            m.unacknowledged.clear()
            for step, count in found.unacknowledged.items():
                m.unacknowledged.labels(str(step)).set(count)
            m.past_target.set(found.past_target)
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        """Migrate, then start the server, the channels, the worker and the scheduler."""
        await db.check_connection(self.engine)
        await self.leadership.start()  # SQLite: a second process stops here (SecondInstance)
        applied = await self.leadership.alone(lambda: db.upgrade(self.engine))
        if applied:
            _LOGGER.info("Database migrated (%d revision(s))", len(applied))
        await self.inbox.start()  # first handles what the last run stored but did not handle
        self._runner = web.AppRunner(self.http_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http_port
        self.settings.http_port = self.http_port  # port 0 asked for any: links need the real one
        for name, channel in self.channels.items():
            if hasattr(channel, "may_receive"):  # polling: the leader alone polls
                channel.may_receive = self.leadership.wait  # type: ignore[attr-defined]
            await self._start_channel(name, channel)
        await self._remember_username()
        await self.worker.start()
        if self.leadership.is_leader:
            await self.tick()  # deadlines missed while we were down fire now, once
        self.scheduler.start()
        _LOGGER.info("SafeSchool Link is running (HTTP on %s:%s)", self.settings.http_host,
                     self.http_port)

    async def _start_channel(self, name: str, channel: Channel) -> None:
        """Start a channel; one that cannot be reached now is retried in the background
        while the others run (its messages wait in the outbox). Only what an operator must
        fix (FatalChannelError) stops the app."""
        try:
            await channel.start()
        except TransientError as exc:
            _LOGGER.warning("%s cannot be reached (%s); retrying in the background",
                            name, exc)
            self.worker.hold(name)
            self.waiting[name] = asyncio.create_task(self._keep_starting(name, channel),
                                                     name=f"start-{name}")

    async def _keep_starting(self, name: str, channel: Channel) -> None:
        delay = START_RETRY_FIRST
        try:
            while True:
                await asyncio.sleep(delay)
                try:
                    await channel.start()
                except TransientError as exc:
                    delay = min(delay * 2, START_RETRY_MAX)
                    _LOGGER.warning("%s still cannot be reached (%s); next try in %.0f s",
                                    name, exc, delay)
                    continue
                except FatalChannelError as exc:
                    _LOGGER.error("%s cannot run: %s", name, exc)
                    return
                _LOGGER.info("%s is up", name)
                self.worker.resume(name)
                if name == "telegram":
                    await self._remember_username()
                return
        finally:
            self.waiting.pop(name, None)

    async def _remember_username(self) -> None:
        telegram = self.channels.get("telegram")
        username = getattr(telegram, "username", None)
        if not username:
            return
        async with self.sessions() as session, session.begin():
            stmt = db.upsert_insert(self.engine.dialect.name, KeyValue).values(
                key=USERNAME_KEY, value=username)
            await session.execute(stmt.on_conflict_do_update(
                index_elements=["key"], set_={"value": username}))

    async def stop(self) -> None:
        """Stop taking new work, drain what is in flight, then close everything.

        The order matters: a send still in flight when its connection closes may reach the
        person without being recorded, and would go out again after a restart. A second
        call does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._jobs:  # let a running job finish its transaction (a report: seconds)
            _done, late = await asyncio.wait(set(self._jobs), timeout=JOB_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for task in list(self.waiting.values()):
            task.cancel()
        await asyncio.gather(*self.waiting.values(), return_exceptions=True)
        for channel in self.channels.values():
            try:
                await channel.stop_receiving()
            except Exception:
                _LOGGER.exception("Error while stopping a channel")
        await self.inbox.stop()  # what is unhandled stays stored for the next start
        await self.worker.stop()
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:
                _LOGGER.exception("Error while closing a channel")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.leadership.stop()
        await self.engine.dispose()
        await self.readers.dispose()

    @property
    def web_only(self) -> bool:
        """Whether the web chat is the only channel (no messenger token is set)."""
        return list(self.channels) == ["web"]

    @property
    def chat_url(self) -> str:
        """Where the web chat is reached."""
        return f"{self.settings.console_base}/chat/"

    async def run_forever(self, started: Callable[[], None] | None = None) -> None:
        """Run until SIGINT or SIGTERM, then shut down gracefully (started: called once
        everything runs)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if started is not None:
            started()
        try:
            await stop.wait()
        finally:
            _LOGGER.info("Shutting down")
            await self.stop()
