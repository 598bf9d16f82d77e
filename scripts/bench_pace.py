"""Benchmark: a campaign at the real limit against a strict fake Bot API, with urgent reports.

The app runs as a real `safeschool run` process; the fake (in this process) behaves like a
strict Bot API: it refuses a send with 429 when more than --rate sends arrived in the last
second, or when a chat already got one within the last second. While the campaign runs, a
teacher files an urgent report every --alert-every seconds through getUpdates; the alert's
latency is the time from the report's last update to the officer's sendMessage.

Prints the campaign rate as a share of the limit, the 429 count, alert p50/p99 (the phase
while the audience is being queued reported apart), the app's CPU seconds per 1,000
messages and its peak RSS, then one SUMMARY line. Not a test: run it by hand, e.g.

    python scripts/bench_pace.py --parents 3000
    python scripts/bench_pace.py --parents 100000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --reset
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from bot.core.settings import Settings
from bot.services.campaigns import activate
from scripts.bench_campaign import arguments, prepare
from storage import crypto, db
from storage.models import Account, Area, Campaign, CampaignRun, Outbox, OutboxStatus, Priority
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.faults import add_liaisons

OFFICER_CHAT = 42
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] * 1000


async def setup(url: str, parents: int, reset: bool, reports: int) -> list[int]:
    """Directory, parents, a campaign due now, the officer's chat and the reporters."""
    await prepare(url, parents, reset)
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        from storage.models import Person

        officer = (await session.execute(select(Person).where(Person.name == "Lê Văn An")))\
            .scalar_one()
        account = (await session.execute(select(Account).where(
            Account.external_id == str(OFFICER_CHAT)))).scalar_one()
        account.person_id = officer.id
        area = (await session.execute(select(Area).where(Area.code == "PL"))).scalar_one()
        campaign = Campaign(name="benchmark", status="draft", area_ids=[area.id],
                            roles=["parent"], content_ids=["whom_to_call"], schedule="once",
                            starts_at=now, runs_done=0, created_at=now)
        session.add(campaign)
        await session.flush()
        activate(campaign, now, Settings(_env_file=None).tz)  # type: ignore[call-arg]
    chats = await add_liaisons(sessions, reports, now)
    await engine.dispose()
    return chats


async def run(args: argparse.Namespace) -> None:
    """Start the app against the strict fake, file reports during the campaign, report."""
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    reports = int(args.parents / args.rate / args.alert_every) + 50
    chats = await setup(url, args.parents, args.reset, reports)
    fake = FakeTelegram(keep_calls=False, strict_rate=int(args.rate))
    fake.watch = {OFFICER_CHAT}
    await fake.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFESCHOOL_")}
    env.update({
        "SAFESCHOOL_DATA_KEYS": ",".join(crypto.keyring().keys),
        "SAFESCHOOL_RELAY_KEY": crypto.relay().key or "",
        "SAFESCHOOL_DATABASE_URL": url, "SAFESCHOOL_TELEGRAM_TOKEN": fake.token,
        "SAFESCHOOL_TELEGRAM_API_URL": fake.api_url, "SAFESCHOOL_TELEGRAM_POLL_TIMEOUT": "10",
        "SAFESCHOOL_HTTP_PORT": "0", "SAFESCHOOL_QUIET_HOURS": "00:00-00:00",
        "SAFESCHOOL_TELEGRAM_RATE_PER_SECOND": str(args.rate),
        "SAFESCHOOL_OUTBOX_CONCURRENCY": str(args.concurrency),
    })
    workdir = Path(tempfile.mkdtemp())
    log = (workdir / "bot.log").open("w")
    app = subprocess.Popen([sys.executable, "-m", "bot", "run", "--log-level", "WARNING"],  # noqa: ASYNC220
                           env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)

    def campaign_sent() -> int:
        return fake.sent_total - fake.sent_per_chat.get(OFFICER_CHAT, 0) - sum(
            fake.sent_per_chat.get(c, 0) for c in chats)

    async def queueing_done() -> bool:
        async with sessions() as session:
            return (await session.execute(select(func.count()).select_from(CampaignRun).where(
                CampaignRun.finished_at.is_not(None)))).scalar_one() > 0

    queue_latencies: list[float] = []
    run_latencies: list[float] = []
    phase = {"queued_at": None}

    async def reporter() -> None:
        """An urgent report every --alert-every seconds while the campaign runs."""
        for chat in chats:
            if campaign_sent() >= args.parents * 0.97:
                return
            fake.user_message(chat, "/report")
            await fake.wait_for(lambda c=chat: fake.sent_per_chat.get(c, 0) >= 1, 30)
            before = fake.sent_per_chat.get(OFFICER_CHAT, 0)
            fake.press(chat, "report:danger:yes")
            pressed = time.monotonic()
            await fake.wait_for(lambda b=before: fake.sent_per_chat.get(OFFICER_CHAT, 0) > b, 60)
            latency = fake.arrivals[OFFICER_CHAT][-1] - pressed
            (run_latencies if phase["queued_at"] else queue_latencies).append(latency)
            await asyncio.sleep(args.alert_every)

    try:
        while campaign_sent() == 0:
            if app.poll() is not None:
                raise SystemExit(f"the app exited: see {workdir / 'bot.log'}")
            await asyncio.sleep(0.01)
        start, cpu_start, total_start = time.monotonic(), cpu_seconds(app.pid), fake.sent_total
        reports = asyncio.create_task(reporter())
        last_print = next_look = start
        while campaign_sent() < args.parents:
            if app.poll() is not None:
                raise SystemExit(f"the app exited: see {workdir / 'bot.log'}")
            if phase["queued_at"] is None and time.monotonic() >= next_look:
                next_look = time.monotonic() + 0.5  # the fake shares this process: stay light
                if await queueing_done():
                    phase["queued_at"] = time.monotonic()
            await asyncio.sleep(0.01)
            if time.monotonic() - last_print >= 30:
                last_print = time.monotonic()
                done = campaign_sent()
                print(f"  {last_print - start:6.0f} s: {done:,} campaign messages "
                      f"({done / (last_print - start):.2f}/s), {fake.too_many} x 429",
                      flush=True)
        total_sent = fake.sent_total - total_start
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(app.pid) - cpu_start
        reports.cancel()
        rss = peak_rss_mib(app.pid)
        app.send_signal(15)
        app.wait(60)
        async with sessions() as session:
            sent_rows = (await session.execute(select(func.count()).select_from(Outbox).where(
                Outbox.status == OutboxStatus.SENT, Outbox.priority == Priority.CAMPAIGN))
            ).scalar_one()
    finally:
        if app.poll() is None:
            app.kill()
        await engine.dispose()
        await fake.close()
    rate = args.parents / elapsed
    every = queue_latencies + run_latencies
    print(f"database:              {engine.dialect.name}")
    print(f"recipients:            {args.parents:,} (rows recorded sent: {sent_rows:,})")
    total_rate = total_sent / elapsed
    print(f"campaign rate:         {rate:.2f}/s = {rate / args.rate:.1%} of {args.rate:g}/s")
    print(f"all sends:             {total_rate:.2f}/s = {total_rate / args.rate:.1%} of the limit "
          "(the campaign shares it with the reports' answers and alerts)")
    print(f"429 answers:           {fake.too_many} ({fake.too_many_chat} for a chat's "
          f"second within a second, the rest for the bot's 31st)")
    print(f"alerts while queueing: p50 {pct(queue_latencies, 50):.0f} ms, "
          f"p99 {pct(queue_latencies, 99):.0f} ms ({len(queue_latencies)} alerts)")
    print(f"alerts after queueing: p50 {pct(run_latencies, 50):.0f} ms, "
          f"p99 {pct(run_latencies, 99):.0f} ms ({len(run_latencies)} alerts)")
    print(f"CPU per 1,000:         {cpu / args.parents * 1000:.2f} s (the app's process)")
    print(f"peak RSS:              {rss:.0f} MiB (the app's process)")
    print(f"SUMMARY db={engine.dialect.name} parents={args.parents} rate={rate:.2f}/s "
          f"({rate / args.rate:.1%}) all_sends={total_rate / args.rate:.1%} 429={fake.too_many} "
          f"alert_p50={pct(every, 50):.0f}ms alert_p99={pct(every, 99):.0f}ms "
          f"queueing_p99={pct(queue_latencies, 99):.0f}ms "
          f"cpu_per_1000={cpu / args.parents * 1000:.2f}s rss={rss:.0f}MiB "
          f"median_alert={statistics.median(every) * 1000 if every else float('nan'):.0f}ms")


def main() -> None:
    """Parse arguments and run."""
    parser = arguments(__doc__, rate=30.0, concurrency=8)  # the Bot API's real limit
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
