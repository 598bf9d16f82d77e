"""Benchmark: one campaign to N generated parents through the loopback fake Telegram.

Prints delivered messages per second, peak memory, and the latency of alerts injected while
the campaign is running (alerts must overtake it). Not a test: run it by hand, e.g.

    python scripts/bench_campaign.py --parents 100000
    python scripts/bench_campaign.py --parents 100000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --reset

The fake runs in the same process (one event loop, one core for both sides), so the numbers
are a floor for the app itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text

from bot.app import App
from bot.core.clock import Clock
from bot.core.messages import Outbound
from bot.core.outbox import enqueue
from bot.core.settings import Settings
from bot.services.campaigns import activate
from bot.services.directory import import_rows, read_files
from storage import crypto, db
from storage.models import Account, Area, Campaign, Outbox, OutboxStatus, Priority
from tests.auxil.audience import add_parents
from tests.auxil.directory import write_directory
from tests.auxil.fake_telegram import FakeTelegram

OFFICER_CHAT = 42
SAMPLE_SECONDS = 0.05  # how often the benchmark looks at its counters

# Case data is encrypted at rest: the benchmark runs with a key of its own.
os.environ.setdefault("SAFESCHOOL_DATA_KEYS", crypto.generate_key())
crypto.configure(crypto.parse_keys(os.environ["SAFESCHOOL_DATA_KEYS"]))
os.environ.setdefault("SAFESCHOOL_RELAY_KEY", crypto.generate_key())
crypto.configure_relay(os.environ["SAFESCHOOL_RELAY_KEY"])


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def reset_schema(url: str) -> None:
    """Drop and recreate PostgreSQL's public schema (a benchmark starts from nothing)."""
    engine = db.create_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def prepare(url: str, parents: int, reset: bool) -> None:
    """Migrate, import a small directory, and generate the parents."""
    if reset:
        await reset_schema(url)
    engine = db.create_engine(url)
    await db.upgrade(engine)
    sessions = db.sessionmaker(engine)
    with tempfile.TemporaryDirectory() as folder:
        rows, _ = read_files(write_directory(Path(folder)))
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await import_rows(session, rows, now)
        session.add(Account(channel="telegram", external_id=str(OFFICER_CHAT), created_at=now,
                            code_failures=0))
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        await add_parents(session, "TH-PL", parents, now, first_chat=1_000_000)
    print(f"generated {parents:,} parents in {time.perf_counter() - started:.1f} s")
    await engine.dispose()


async def run(args: argparse.Namespace) -> None:
    """Start the app against the fake, send the campaign, inject alerts, report."""
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    await prepare(url, args.parents, args.reset)
    fake = FakeTelegram(keep_calls=False)  # counters only: the fake's memory stays flat
    await fake.start()
    settings = Settings(
        _env_file=None, database_url=url, telegram_token=fake.token,  # type: ignore[call-arg]
        telegram_api_url=fake.api_url, telegram_poll_timeout=1, http_port=0,
        telegram_rate_per_second=args.rate, outbox_concurrency=args.concurrency,
        quiet_hours="00:00-00:00")
    app = App(settings, Clock())
    await app.start()
    sessions = app.sessions
    async with sessions() as session, session.begin():
        area = (await session.execute(select(Area).where(Area.code == "PL"))).scalar_one()
        now = datetime.now(UTC)
        campaign = Campaign(name="benchmark", status="draft", area_ids=[area.id],
                            roles=["parent"], content_ids=["whom_to_call"], schedule="once",
                            starts_at=now, runs_done=0, created_at=now)
        session.add(campaign)
        await session.flush()
        activate(campaign, now, settings.tz)
        officer = (await session.execute(select(Account).where(
            Account.external_id == str(OFFICER_CHAT)))).scalar_one()

    def delivered() -> int:
        return fake.sent_total - fake.sent_per_chat.get(OFFICER_CHAT, 0)

    start = time.perf_counter()
    queueing = asyncio.create_task(app.campaign_tick())
    latencies: list[float] = []
    next_alert = start + args.alert_every
    last_report = start
    n = 0
    while delivered() < args.parents:
        await asyncio.sleep(SAMPLE_SECONDS)
        now_perf = time.perf_counter()
        if now_perf >= next_alert and delivered() < args.parents * 0.95:
            n += 1
            sent_before = fake.sent_per_chat.get(OFFICER_CHAT, 0)
            async with sessions() as session, session.begin():
                await enqueue(session, officer, Outbound(f"Cảnh báo thử {n}"),
                              key=f"bench-alert:{n}", now=datetime.now(UTC),
                              priority=Priority.ALERT)
            app.worker.wake()
            await fake.wait_for(
                lambda k=sent_before: fake.sent_per_chat.get(OFFICER_CHAT, 0) > k, 60)
            latencies.append(time.perf_counter() - now_perf)
            next_alert = time.perf_counter() + args.alert_every
        if now_perf - last_report >= 10:
            last_report = now_perf
            done = delivered()
            print(f"  {now_perf - start:6.1f} s: {done:,} delivered "
                  f"({done / (now_perf - start):.0f}/s), peak RSS {peak_rss_mib():.0f} MiB",
                  flush=True)
    elapsed = time.perf_counter() - start
    await queueing
    async with sessions() as session:
        sent_rows = (await session.execute(select(func.count()).select_from(Outbox).where(
            Outbox.status == OutboxStatus.SENT, Outbox.priority == Priority.CAMPAIGN))
        ).scalar_one()
    await app.stop()
    await fake.close()
    print(f"database:            {app.engine.dialect.name}")
    print(f"recipients:          {args.parents:,} (rows recorded sent: {sent_rows:,})")
    print(f"elapsed:             {elapsed:.1f} s")
    print(f"messages/s:          {args.parents / elapsed:.0f}")
    print(f"peak RSS:            {peak_rss_mib():.0f} MiB (app and fake in one process; "
          "the fake keeps counters only)")
    if latencies:
        print(f"alert latency:       median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} alerts "
              "sent during the campaign")


def main() -> None:
    """Parse arguments and run."""
    parser = arguments(__doc__, rate=100_000, concurrency=16)
    asyncio.run(run(parser.parse_args()))


def arguments(doc: str | None, *, rate: float, concurrency: int) -> argparse.ArgumentParser:
    """The options both campaign benchmarks take."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--parents", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--reset", action="store_true",
                        help="drop and recreate the public schema first (PostgreSQL)")
    parser.add_argument("--rate", type=float, default=rate, help="messages/s limit")
    parser.add_argument("--concurrency", type=int, default=concurrency)
    parser.add_argument("--alert-every", type=float, default=2.0, help="seconds")
    return parser


if __name__ == "__main__":
    main()
