"""Province scale (issue #15): one province of the 34, measured where it hurts.

Builds a province through the real directory import (1,000 communes, each with villages;
50,000 schools; 10,000 officers), adds parents in bulk (5,000,000 on PostgreSQL, 500,000 on
SQLite by default) and two years of cases, then prints:
  - the directory import's time;
  - routing a report (the case service's create: store, route, alert, start the clock), per
    report, p50/p99 (goal < 10 ms);
  - `/cases` for the province's chief (the case service's list_open), p50 (goal < 100 ms);
  - a province-wide statistics year (goal < 1 s);
  - a campaign to every parent of the province: enqueue rate and the process's peak memory
    (goal < 300 MB), and the alert path's p50/p99 while it runs (goal < 250 ms).

    python scripts/bench_scale.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench
    python scripts/bench_scale.py                      # SQLite in /tmp, 500,000 parents
    python scripts/bench_scale.py --parents 200000 --cases 50000   # a quicker look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics as stats
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from bot.core.clock import Clock
from bot.core.settings import Settings
from bot.services import periods
from bot.services.campaigns import activate
from bot.services.cases import Actor, CaseService, Draft, route
from bot.services.directory import Row, import_rows
from bot.services.statistics import compute
from bot.services.timing import QuietHours
from schedules.campaigns import campaign_tick
from scripts.bench_campaign import reset_schema
from scripts.bench_stats import analyze, insert_batches
from storage import crypto, db
from storage.models import (
    CATEGORIES,
    Account,
    Area,
    Campaign,
    Incident,
    Person,
    Role,
    RoleAssignment,
    School,
)

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LEVELS = ("mầm non", "tiểu học", "THCS", "THPT")


def rss_mib() -> float:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def directory_rows(communes: int, villages: int, schools: int, officers: int) -> list[Row]:
    """The province as its offices would write it: areas, schools, officers."""
    rng = random.Random(15)
    rows = [Row("areas", "bench", 1, {"code": "P", "name": "Tỉnh Thử Nghiệm",
                                      "parent_code": "", "level": "tỉnh"})]
    for c in range(communes):
        rows.append(Row("areas", "bench", c + 2, {"code": f"X{c:04d}", "name": f"Xã số {c + 1}",
                                                  "parent_code": "P", "level": "xã"}))
        for v in range(villages):
            rows.append(Row("areas", "bench", 0, {
                "code": f"X{c:04d}-T{v}", "name": f"Thôn {v + 1} xã {c + 1}",
                "parent_code": f"X{c:04d}", "level": "thôn"}))
    for s in range(schools):
        rows.append(Row("schools", "bench", s + 2, {
            "code": f"S{s:05d}", "name": f"Trường số {s + 1}",
            "area_code": f"X{rng.randrange(communes):04d}", "level": LEVELS[s % 4],
            "address": ""}))
    duties = ("primary", "backup", "chief")
    for o in range(officers):
        commune = o % communes
        rank = o // communes
        village = (rank - 3) % villages
        area = f"X{commune:04d}" if rank < 3 else f"X{commune:04d}-T{village}"
        duty = duties[rank] if rank < 3 else ("primary" if rank - 3 < villages else "backup")
        rows.append(Row("officers", "bench", o + 2, {
            "name": f"Cán bộ {o + 1}", "phone": f"09{o:08d}", "area_code": area,
            "duty": duty}))
    rows.append(Row("officers", "bench", officers + 2, {
        "name": "Chỉ huy tỉnh", "phone": "0988888888", "area_code": "P", "duty": "chief"}))
    return rows


async def add_people(sessions, schools: int, parents: int, liaisons: int, now) -> list[int]:
    """Parents (with Telegram accounts) and a liaison per report school; return the schools
    of the liaisons, by liaison person id order."""
    rng = random.Random(16)
    async with sessions() as session:
        first = ((await session.execute(select(func.max(Person.id)))).scalar_one() or 0) + 1
        school_ids = list((await session.execute(select(School.id).order_by(School.id)))
                          .scalars())
    await insert_batches(sessions, Person, ({"id": first + p, "created_at": now,
                                             "campaigns_stopped": False}
                                            for p in range(parents + liaisons)),
                         "people", parents + liaisons)
    await insert_batches(sessions, Account, (
        {"channel": "telegram", "external_id": str(1_000_000 + p), "person_id": first + p,
         "created_at": now, "code_failures": 0} for p in range(parents + liaisons)),
        "accounts", parents + liaisons)
    # Registered a day ago: the yearly report (as of now) counts them per school. Registered
    # "now" they fell outside it, and the figure left out the heaviest count (10.8 s of
    # 11 s before the index migration 0019 made it 1.1 s).
    await insert_batches(sessions, RoleAssignment, (
        {"person_id": first + p, "role": Role.PARENT,
         "school_id": school_ids[rng.randrange(len(school_ids))],
         "created_at": now - timedelta(days=1)}
        for p in range(parents)), "parents' roles", parents)
    async with sessions() as session:  # officers read their alerts on Telegram
        officers = list((await session.execute(select(RoleAssignment.person_id).where(
            RoleAssignment.role == Role.OFFICER).distinct())).scalars())
    await insert_batches(sessions, Account, (
        {"channel": "telegram", "external_id": str(900_000_000 + n), "person_id": pid,
         "created_at": now, "code_failures": 0} for n, pid in enumerate(officers)),
        "officers' accounts", len(officers))
    liaison_schools = [school_ids[rng.randrange(len(school_ids))] for _ in range(liaisons)]
    await insert_batches(sessions, RoleAssignment, (
        {"person_id": first + parents + n, "role": Role.LIAISON,
         "school_id": liaison_schools[n], "created_at": now} for n in range(liaisons)),
        "liaisons", liaisons)
    return [first + parents + n for n in range(liaisons)]


async def add_cases(sessions, cases: int, now) -> None:
    """Two years of cases across the province's schools (for the statistics year)."""
    rng = random.Random(17)
    async with sessions() as session:
        schools = (await session.execute(select(School.id, School.area_id))).all()
    start = now - timedelta(days=730)
    moments = sorted(rng.randrange(730 * 86400) for _ in range(cases))

    def rows():
        for n in range(cases):
            school_id, area_id = schools[rng.randrange(len(schools))]
            created = start + timedelta(seconds=moments[n])
            acked = created + timedelta(minutes=rng.expovariate(1 / 30))
            closed = created + timedelta(days=rng.expovariate(1 / 8))
            closed = closed if closed < now and rng.random() < 0.9 else None
            yield {"ref": f"B-{n:07d}", "school_id": school_id, "area_id": area_id,
                   "reporter_role": "liaison", "anonymous": rng.random() < 0.2,
                   "urgent": rng.random() < 0.1, "category": rng.choice(CATEGORIES),
                   "status": "closed" if closed else "acknowledged", "created_at": created,
                   "acknowledged_at": acked, "closed_at": closed,
                   "outcome": "resolved" if closed else None, "updated_at": created,
                   "escalation_step": 0, "resolution_due_at": created + timedelta(days=14)}
    await insert_batches(sessions, Incident, rows(), "cases", cases)


async def report(sessions, person_id: int, now, urgent: bool) -> float:
    """One report through the case service, committed; return its seconds."""
    began = time.perf_counter()
    async with sessions() as session, session.begin():
        person = await session.get(Person, person_id)
        role = person.roles[0]
        school = await session.get(School, role.school_id)
        service = CaseService(session, now=now, tz=TZ, default_language="vi")
        await service.create(Actor(person, "telegram"), school, Role.LIAISON, Draft(
            category="physical", description="Học sinh bị đánh ở cổng trường"), urgent=urgent)
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite+aiosqlite:////tmp/bench_scale.db")
    parser.add_argument("--communes", type=int, default=1_000)
    parser.add_argument("--villages", type=int, default=4, help="per commune")
    parser.add_argument("--schools", type=int, default=50_000)
    parser.add_argument("--officers", type=int, default=10_000)
    parser.add_argument("--parents", type=int, default=None,
                        help="default 5,000,000 on PostgreSQL, 500,000 on SQLite")
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--reports", type=int, default=200, help="reports timed one by one")
    args = parser.parse_args()
    url = args.database_url
    postgres = url.startswith("postgres")
    parents = args.parents if args.parents is not None else (5_000_000 if postgres else 500_000)
    crypto.configure(crypto.parse_keys(crypto.generate_key()))
    crypto.configure_relay(crypto.parse_relay_key(crypto.generate_key()))
    if postgres:
        await reset_schema(url)
    else:
        Path(url.split(":///", 1)[1]).unlink(missing_ok=True)  # noqa: ASYNC240 - before any work
    engine = db.create_engine(url)
    await db.upgrade(engine)
    sessions = db.sessionmaker(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, str] = {}

    rows = directory_rows(args.communes, args.villages, args.schools, args.officers)
    began = time.perf_counter()
    async with sessions() as session, session.begin():
        await import_rows(session, rows, now)
    seconds = time.perf_counter() - began
    results["import"] = (f"{len(rows):,} rows (areas {1 + args.communes * (1 + args.villages):,},"
                         f" schools {args.schools:,}, officers {args.officers + 1:,}) in "
                         f"{seconds:.1f} s")
    print("directory import:", results["import"], flush=True)
    liaisons = await add_people(sessions, args.schools, parents, args.reports * 3, now)
    await add_cases(sessions, args.cases, now)
    await analyze(engine)

    routed = [await report(sessions, liaisons[n], now, urgent=n % 2 == 0)
              for n in range(args.reports)]
    routing = []
    async with sessions() as session:
        made = list((await session.execute(select(Incident).where(
            Incident.ref.not_like("B-%")))).scalars())
        for incident in made:
            began = time.perf_counter()
            await route(session, incident, ("primary", "backup"), now)
            routing.append(time.perf_counter() - began)
    results["routing"] = (f"routing p50 {percentile(routing, .5) * 1000:.1f} ms, p99 "
                          f"{percentile(routing, .99) * 1000:.1f} ms; a whole report (store, "
                          f"route, alert, clock, commit) p50 {percentile(routed, .5) * 1000:.1f}"
                          f" ms, p99 {percentile(routed, .99) * 1000:.1f} ms "
                          f"({args.reports} reports)")
    print("routing:", results["routing"], flush=True)

    async with sessions() as session:
        chief = (await session.execute(select(Person).where(Person.phone == "+84988888888"))) \
            .scalar_one()
        province = (await session.execute(select(Area).where(Area.code == "P"))).scalar_one()
    listed = []
    for _ in range(20):
        async with sessions() as session, session.begin():
            chief = await session.get(Person, chief.id)
            began = time.perf_counter()
            await CaseService(session, now=now, tz=TZ, default_language="vi").list_open(
                Actor(chief, "telegram"), 20)
            listed.append(time.perf_counter() - began)
    results["cases"] = f"p50 {stats.median(listed) * 1000:.1f} ms (the province's chief)"
    print("/cases:", results["cases"], flush=True)

    reader = db.create_engine(url, read_only=True)
    times = []
    for _ in range(3):
        async with db.sessionmaker(reader)() as session:
            began = time.perf_counter()
            await compute(session, periods.year(now.year), province, now=now, tz=TZ)
            times.append(time.perf_counter() - began)
    await reader.dispose()
    results["statistics"] = f"best {min(times):.2f} s ({args.cases:,} cases over two years)"
    print("statistics year:", results["statistics"], flush=True)

    # A campaign to every parent of the province, queued by the app's own campaign clock
    # (which yields to the alert lane between batches), with urgent reports meanwhile.
    async with sessions() as session, session.begin():
        campaign = Campaign(name="Toàn tỉnh", roles=["parent"], content_ids=["whom_to_call"],
                            schedule="once", starts_at=now, runs_done=0, created_at=now,
                            status="draft", area_ids=[province.id])
        session.add(campaign)
        await session.flush()
        activate(campaign, now, TZ)
    settings = Settings(_env_file=None, database_url=url,  # type: ignore[call-arg]
                        quiet_hours="00:00-00:00")
    alerts: list[float] = []
    stop = asyncio.Event()
    peak = rss_mib()

    async def reporting() -> None:
        n = args.reports
        while not stop.is_set():
            alerts.append(await report(sessions, liaisons[n % len(liaisons)], now, urgent=True))
            n += 1
            with contextlib.suppress(TimeoutError):  # a report every quarter second
                await asyncio.wait_for(stop.wait(), 0.25)

    async def sampling() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mib())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    load = [asyncio.create_task(reporting()), asyncio.create_task(sampling())]
    began = time.perf_counter()
    queued = await campaign_tick(sessions, Clock(), settings, QuietHours.parse(
        settings.quiet_hours, TZ))
    seconds = time.perf_counter() - began
    stop.set()
    await asyncio.gather(*load)
    results["campaign"] = (f"{queued:,} messages queued at {queued / seconds:,.0f}/s "
                           f"({seconds:.0f} s), peak RSS {peak:.0f} MiB")
    results["alerts"] = (f"p50 {percentile(alerts, .5) * 1000:.0f} ms, p99 "
                         f"{percentile(alerts, .99) * 1000:.0f} ms while queueing "
                         f"({len(alerts)} urgent reports)")
    print("campaign:", results["campaign"])
    print("alerts while queueing:", results["alerts"])
    await engine.dispose()
    print(f"SUMMARY {engine.dialect.name}, {parents:,} parents: import {results['import']}; "
          f"{results['routing']}; /cases {results['cases']}; statistics "
          f"{results['statistics']}; campaign {results['campaign']}; alerts {results['alerts']}")


if __name__ == "__main__":
    asyncio.run(main())
