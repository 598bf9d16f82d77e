"""How long a province-wide yearly statistics report takes (the committee's heaviest read).

Generates a province (1,000 areas in three levels, 50,000 schools, 500,000 cases over two
years, parents and awareness messages), then times `statistics.compute` for the whole
province over a reporting year and a quarter. Goal (issue #10): < 1 s on PostgreSQL, < 3 s
on SQLite on a 2-core machine.

    python scripts/bench_stats.py                          # SQLite file in /tmp
    python scripts/bench_stats.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench
    python scripts/bench_stats.py --keep                   # time again without regenerating
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics as stats
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select

from bot.services import outreach, periods
from bot.services.statistics import compute
from scripts.bench_campaign import reset_schema
from storage import db
from storage.models import (
    CATEGORIES,
    OUTCOMES,
    Account,
    Area,
    Incident,
    Outbox,
    OutboxStatus,
    Person,
    Priority,
    Role,
    RoleAssignment,
    School,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 20, 5, 0, tzinfo=UTC)  # just after the reporting year 2026 closed
BATCH = 5_000
LEVELS = ("mầm non", "tiểu học", "THCS", "THPT")


def progress(label: str, done: int, total: int) -> None:
    print(f"\r  {label}: {done:,}/{total:,}", end="" if done < total else "\n", flush=True)


async def insert_batches(sessions, table, rows, label: str, total: int) -> None:
    batch: list[dict] = []
    done = 0
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            async with sessions() as session, session.begin():
                await session.execute(insert(table), batch)
            done += len(batch)
            batch = []
            progress(label, done, total)
    if batch:
        async with sessions() as session, session.begin():
            await session.execute(insert(table), batch)
        progress(label, done + len(batch), total)


async def generate(sessions, areas: int, schools: int, cases: int, parents: int,
                   quarters_sent: int = 8) -> int:
    """Fill the database; return the province's area id. Every parent is sent one
    awareness message a quarter in the last quarters_sent quarters of the two years."""
    rng = random.Random(20261123)
    now = NOW
    districts = max(1, round(areas ** 0.5))
    communes = areas - 1 - districts
    area_rows = [{"id": 1, "code": "P", "name": "Tỉnh Thử Nghiệm", "level": "tỉnh",
                  "parent_id": None}]
    area_rows += [{"id": 2 + d, "code": f"D{d:03d}", "name": f"Huyện số {d + 1}",
                   "level": "huyện", "parent_id": 1} for d in range(districts)]
    first_commune = 2 + districts
    area_rows += [{"id": first_commune + c, "code": f"C{c:04d}", "name": f"Xã số {c + 1}",
                   "level": "xã", "parent_id": 2 + c % districts} for c in range(communes)]
    await insert_batches(sessions, Area, iter(area_rows), "areas", len(area_rows))
    school_area = [first_commune + rng.randrange(communes) for _ in range(schools)]
    await insert_batches(sessions, School, (
        {"id": s + 1, "code": f"S{s:05d}", "name": f"Trường số {s + 1}",
         "level": LEVELS[s % len(LEVELS)], "area_id": school_area[s],
         "parent_code": f"PC{s:06d}"} for s in range(schools)), "schools", schools)

    start = now - timedelta(days=730)

    # Cases arrive in time order, as they do in life (ids grow with created_at).
    moments = sorted(rng.randrange(730 * 86400) for _ in range(cases))

    def case_rows():
        for n in range(cases):
            school = rng.randrange(schools)
            created = start + timedelta(seconds=moments[n])
            urgent = rng.random() < 0.1
            acked = created + timedelta(minutes=rng.expovariate(1 / 30)) \
                if rng.random() < 0.95 else None
            closed = created + timedelta(days=rng.expovariate(1 / 8)) \
                if acked and rng.random() < 0.9 else None
            if closed and closed > now:
                closed = None
            yield {
                "id": n + 1, "ref": f"B-{n:07d}", "school_id": school + 1,
                "area_id": school_area[school], "reporter_role": "liaison",
                "anonymous": rng.random() < 0.2, "urgent": urgent,
                "category": rng.choice(CATEGORIES), "status": "closed" if closed else "new",
                "created_at": created, "acknowledged_at": acked, "closed_at": closed,
                "outcome": rng.choice(OUTCOMES) if closed else None, "updated_at": created,
                "escalation_step": 0,
                "resolution_due_at": created + timedelta(days=3 if urgent else 14),
                "escalated_at": created + timedelta(hours=1) if rng.random() < 0.1 else None,
                "confirmation": rng.choice(("asked", "confirmed", None)) if closed else None,
                "confirmation_asked_at": closed,
            }
    await insert_batches(sessions, Incident, case_rows(), "cases", cases)

    await insert_batches(sessions, Person, ({"id": p + 1, "created_at": start}
                                            for p in range(parents)), "parents", parents)
    await insert_batches(sessions, Account, (
        {"id": p + 1, "channel": "telegram", "external_id": str(10_000 + p),
         "person_id": p + 1, "created_at": start, "code_failures": 0}
        for p in range(parents)), "accounts", parents)
    parent_school = [rng.randrange(schools) for _ in range(parents)]
    await insert_batches(sessions, RoleAssignment, (
        {"person_id": p + 1, "role": Role.PARENT, "school_id": parent_school[p] + 1,
         "created_at": start} for p in range(parents)), "parents' roles", parents)
    # One awareness message a quarter to every parent, over the two years' last quarters,
    # sent at Telegram's 30 a second (5,000,000 take two days).
    sends = parents * quarters_sent
    skipped = 8 - quarters_sent

    def outbox_rows():
        for n in range(sends):
            p = n % parents
            at = start + timedelta(days=91 * (skipped + n // parents) + 1, seconds=p / 30)
            yield {"idempotency_key": f"bench:{n}", "account_id": p + 1,
                   "channel": "telegram", "chat_id": str(10_000 + p),
                   "priority": Priority.CAMPAIGN, "payload": {"text": "."},
                   "status": OutboxStatus.SENT, "attempts": 1, "next_attempt_at": at,
                   "created_at": at, "sent_at": at, "campaign_run_id": n // parents + 1,
                   "area_id": school_area[parent_school[p]]}
    await insert_batches(sessions, Outbox, outbox_rows(), "awareness messages", sends)
    return 1


async def analyze(engine) -> None:
    """Refresh the planner's statistics after a bulk load (outside a transaction on PG).

    On PostgreSQL a VACUUM too: autovacuum does it to a table after inserts, and until it
    has, the planner cannot read a covering index alone (the visibility map is empty)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.exec_driver_sql("COMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")


def watch(engine, timings: list[tuple[float, str]]) -> None:
    """Record each statement's time (from the cursor's execute to its last row fetched is
    not seen here: this is the execute, which on both drivers runs the whole query)."""
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["began"] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        words = " ".join(statement.split())
        if words.startswith("WITH"):  # name it by its main SELECT, after the CTEs
            words = words[words.rfind(") SELECT ") + 2:] or words
        where = words.find(" FROM ")
        timings.append((time.perf_counter() - conn.info.pop("began"),
                        (words[:60] + " …" + words[where:where + 70]) if where > 0
                        else words[:130]))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite+aiosqlite:////tmp/bench_stats.db")
    parser.add_argument("--areas", type=int, default=1_000)
    parser.add_argument("--schools", type=int, default=50_000)
    parser.add_argument("--cases", type=int, default=500_000)
    parser.add_argument("--parents", type=int, default=100_000)
    parser.add_argument("--quarters-sent", type=int, default=8, choices=range(9),
                        metavar="0-8", help="quarters (the latest of the two years) in which "
                        "every parent was sent an awareness message (default 8: 8 messages a "
                        "parent; 1: one, in the reporting year, as a 5,000,000-parent "
                        "province's outreach figure needs without 40,000,000 rows)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true",
                        help="reuse the database an earlier run generated (generate if empty)")
    parser.add_argument("--per-query", action="store_true",
                        help="also print the time of each statement of the last run")
    args = parser.parse_args()
    url = args.database_url
    if not args.keep:
        if url.startswith("sqlite"):
            Path(url.split(":///", 1)[1]).unlink(missing_ok=True)  # noqa: ASYNC240 - before any work
        else:
            await reset_schema(url)
    engine = db.create_engine(url)
    await db.upgrade(engine)
    sessions = db.sessionmaker(engine)
    if args.keep:  # reuse what an earlier run generated, if it did
        async with sessions() as session:
            generated = (await session.execute(select(Incident.id).limit(1))).first()
    if not args.keep or generated is None:
        began = time.perf_counter()
        await generate(sessions, args.areas, args.schools, args.cases, args.parents,
                       args.quarters_sent)
        await analyze(engine)
        print(f"generated in {time.perf_counter() - began:.0f} s")
    # What the leader's outreach clock does every minute as messages are sent; here, once,
    # for every message generated (with --keep, only the last minute's again).
    began = time.perf_counter()
    read = await outreach.roll_up(sessions, cutoff=periods.DECREE_CUTOFF_DAY, tz=TZ)
    seconds = time.perf_counter() - began
    print(f"outreach roll-up: {read:,} sent messages read in {seconds:.1f} s"
          + (f" ({read / seconds:,.0f}/s)" if read else ""))
    await engine.dispose()
    # Timed the way the app reads them: on the read-only engine the report clock uses.
    engine = db.create_engine(url, read_only=True)
    sessions = db.sessionmaker(engine)
    timings: list[tuple[float, str]] = []
    if args.per_query:
        watch(engine, timings)
    async with sessions() as session:
        counted = (await session.execute(select(func.count()).select_from(Incident)))
        cases = counted.scalar_one()
        province = (await session.execute(select(Area).where(Area.parent_id.is_(None))
                                          .order_by(Area.id))).scalars().first()
    print(f"{engine.dialect.name}: {cases:,} cases, province {province.code}")
    for label, period in (("year 2026", periods.year(2026)),
                          ("quarter 2026-Q4", periods.quarter(2026, 4))):
        times = []
        for _ in range(args.runs):
            timings.clear()
            async with sessions() as session:
                began = time.perf_counter()
                report = await compute(session, period, province, now=NOW, tz=TZ)
                times.append(time.perf_counter() - began)
        print(f"{label}: received {report.total.received:,}, closed {report.total.closed:,}, "
              f"backlog {report.total.backlog:,}, reached {report.total.outreach_people:,}; "
              f"best {min(times):.2f} s, median {stats.median(times):.2f} s "
              f"over {args.runs} runs")
        for seconds, statement in sorted(timings, reverse=True):
            print(f"    {seconds:6.3f} s  {statement}")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
