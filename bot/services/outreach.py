"""How many people the awareness messages reached, kept as the messages are sent.

Counting it for each report meant finding the distinct people among every awareness message
sent in the period: 40 s for a province's year with its 5,000,000 parents reached. Instead
the roll-up (a clock job of the leader, every minute) reads each sent message once and keeps

- per person and reporting year, the reporting months a message reached them in (a 12-bit
  mask) and the area the year's first one went to (ReachYear);
- per period (month, quarter, half, year), area and role, the people reached for the first
  time in that period (ReachCount), so a period's count is exactly the people it reached,
  each once, and the areas' counts add up to the whole.

A person is counted in the area of their reporting year's first message (a parent of
children in two communes: in the first), under each role they hold when the message is read
(role "" counts people whatever their roles). A report adds what the roll-up has not read yet
(`pending`, computed the same way without writing), so its figures are up to the moment.

Messages are read in the order of their sent_at. A sending transaction may commit a little
after the instant it wrote, so each roll-up reads again from MARGIN before where the last one
stopped; a message read twice changes nothing (its month is in the mask already). A report's
unread part starts after the last message the roll-up read.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, any_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import periods
from storage.db import insert_ignoring, upsert_insert
from storage.models import Account, Outbox, ReachCount, ReachState, ReachYear, RoleAssignment

MARGIN = timedelta(minutes=1)
# Messages read in one transaction. On PostgreSQL, many: each batch adds to the counts of
# every area it touches (a province: thousands of rows), 20,000 a batch read 17,000 messages
# a second, 2,000 a batch 8,000. On SQLite, few: a batch holds the one write lock, which
# alerts wait for.
BATCH = {"postgresql": 20_000, "sqlite": 500}
AMONG = 5_000  # people looked up in one statement
UNREAD_MAX = 100_000  # messages a report tallies itself (a minute at 1,000 a second: 60,000)
ANY_ROLE = ""
# Every reporting period of a year as (label suffix, its months' bits): months, quarters,
# halves, the year (labels as periods.py writes them: 2026-11, 2026-Q3, 2026-H1, 2026).
SPANS: tuple[tuple[str, int], ...] = (
    *((f"-{m:02d}", 1 << (m - 1)) for m in range(1, 13)),
    *((f"-Q{q}", 0b111 << 3 * (q - 1)) for q in range(1, 5)),
    *((f"-H{h}", 0x3F << 6 * (h - 1)) for h in range(1, 3)),
    ("", 0xFFF),
)

Sent = tuple[datetime, int, int]  # sent_at, area, person
Known = dict[tuple[int, int], tuple[int, int]]  # (person, year) → (area, months)
Increments = Counter[tuple[str, int, str]]  # (period label, area, role) → people


def month_of(day: date, cutoff: int) -> tuple[int, int]:
    """The reporting year and month (1–12) a local day falls in."""
    year = periods.reporting_year_of(day, cutoff)
    if cutoff == 1:
        return year, day.month
    number = day.month + (1 if day.day >= cutoff else 0)
    return year, (number - 1) % 12 + 1  # 20 December: month 1 of the next reporting year


class Months:
    """The reporting (year, month) of sent instants, each local day worked out once."""

    def __init__(self, cutoff: int, tz: Any) -> None:
        self.cutoff, self.tz = cutoff, tz
        self.days: dict[date, tuple[int, int]] = {}

    def __call__(self, instant: datetime) -> tuple[int, int]:
        day = instant.astimezone(self.tz).date()
        found = self.days.get(day)
        if found is None:
            found = self.days[day] = month_of(day, self.cutoff)
        return found


def tally(sent: Iterable[Sent], known: Known, roles: dict[int, set[str]],
          months_of: Months) -> tuple[Known, Increments]:
    """What the messages (in the order they were sent) change: the people's years whose
    months grew, and the people reached for the first time in each period."""
    grown: dict[tuple[int, int], list[int]] = {}
    for sent_at, area, person in sent:
        year, number = months_of(sent_at)
        row = grown.get((person, year))
        if row is None:
            area_before, months_before = known.get((person, year), (area, 0))
            row = grown[(person, year)] = [area_before, months_before]
        row[1] |= 1 << (number - 1)
    changed: Known = {}
    increments: Increments = Counter()
    for (person, year), (area, months) in grown.items():
        before = known.get((person, year), (area, 0))[1]
        if months == before:
            continue
        changed[(person, year)] = (area, months)
        newly = months & ~before
        for suffix, bits in SPANS:
            if newly & bits and not before & bits:
                for role in (ANY_ROLE, *roles.get(person, ())):
                    increments[(f"{year}{suffix}", area, role)] += 1
    return changed, increments


def _sent(since: datetime | None, after: tuple[datetime, int] | None,
          before: datetime | None = None) -> Any:
    """Sent awareness messages to people (not erased) in an area, in the order sent."""
    query = (select(Outbox.sent_at, Outbox.id, Outbox.area_id, Account.person_id)
             .join(Account, Account.id == Outbox.account_id)
             .where(Outbox.campaign_run_id.is_not(None), Outbox.sent_at.is_not(None),
                    Outbox.area_id.is_not(None), Account.person_id.is_not(None))
             .order_by(Outbox.sent_at, Outbox.id))
    if since is not None:
        query = query.where(Outbox.sent_at >= since - MARGIN)
    if after is not None:  # the first condition alone is a range of the index
        query = query.where(Outbox.sent_at >= after[0],
                            or_(Outbox.sent_at > after[0],
                                and_(Outbox.sent_at == after[0], Outbox.id > after[1])))
    if before is not None:
        query = query.where(Outbox.sent_at < before)
    return query


def _among(session: AsyncSession, column: Any, values: list[int]) -> Any:
    """column IN values: on PostgreSQL one array parameter (= ANY), not thousands of
    parameters compiled into the statement (a seventh of the roll-up's time)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("among", values, type_=ARRAY(Integer)))
    return column.in_(values)


async def _known_and_roles(session: AsyncSession, rows: Sequence[Sent], cutoff: int,
                           years: set[int]) -> tuple[Known, dict[int, set[str]]]:
    people = sorted({person for _, _, person in rows})
    known: Known = {}
    roles: dict[int, set[str]] = {}
    connection = await session.connection()  # plain rows: no ORM on the way
    for start in range(0, len(people), AMONG):
        chunk = people[start:start + AMONG]
        for person, year, area, months in await connection.execute(
                select(ReachYear.person_id, ReachYear.year, ReachYear.area_id, ReachYear.months)
                .where(_among(session, ReachYear.person_id, chunk),
                       ReachYear.cutoff == cutoff, ReachYear.year.in_(sorted(years)))):
            known[(person, year)] = (area, months)
        for person, role in await connection.execute(
                select(RoleAssignment.person_id, RoleAssignment.role)
                .where(_among(session, RoleAssignment.person_id, chunk)).distinct()):
            roles.setdefault(person, set()).add(role)
    return known, roles


@functools.cache
def _years_upsert(dialect: str) -> Any:
    insert = upsert_insert(dialect, ReachYear.__table__)
    return insert.on_conflict_do_update(
        index_elements=["person_id", "cutoff", "year"], set_={"months": insert.excluded.months})


@functools.cache
def _counts_upsert(dialect: str) -> Any:
    insert = upsert_insert(dialect, ReachCount.__table__)
    return insert.on_conflict_do_update(
        index_elements=["cutoff", "period", "area_id", "role"],
        set_={"people": ReachCount.__table__.c.people + insert.excluded.people})


async def roll_up(sessions: async_sessionmaker, *, cutoff: int, tz: Any,
                  batch: int | None = None) -> int:
    """Read the sent awareness messages the roll-up has not read; return how many it read.

    Each batch is one transaction that holds the cut-off's state row, so two roll-ups (a
    new leader's and an old one's last) take turns and never count a person twice."""
    read = 0
    after: tuple[datetime, int] | None = None
    months_of = Months(cutoff, tz)
    while True:
        async with sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            batch = batch or BATCH.get(dialect, BATCH["sqlite"])
            await session.execute(insert_ignoring(dialect, ReachState, "cutoff"),
                                  {"cutoff": cutoff, "rolled_until": None})
            since, last_id = (await session.execute(
                select(ReachState.rolled_until, ReachState.last_id)
                .where(ReachState.cutoff == cutoff).with_for_update())).one()
            read_rows = (await (await session.connection()).execute(
                _sent(since, after).limit(batch))).all()
            if not read_rows:
                return read
            rows = [(sent_at, area, person) for sent_at, _, area, person in read_rows]
            known, roles = await _known_and_roles(
                session, rows, cutoff, {months_of(sent_at)[0] for sent_at, _, _ in rows})
            changed, increments = tally(rows, known, roles, months_of)
            if changed:
                await session.execute(_years_upsert(dialect), [
                    {"person_id": person, "cutoff": cutoff, "year": year, "area_id": area,
                     "months": months} for (person, year), (area, months) in changed.items()])
            if increments:
                await session.execute(_counts_upsert(dialect), [
                    {"cutoff": cutoff, "period": label, "area_id": area, "role": role,
                     "people": n} for (label, area, role), n in increments.items()])
            last = read_rows[-1]
            if since is None or (last.sent_at, last.id) > (since, last_id or 0):
                await session.execute(update(ReachState).where(ReachState.cutoff == cutoff)
                                      .values(rolled_until=last.sent_at, last_id=last.id))
        read += len(rows)
        after = (last.sent_at, last.id)
        if len(rows) < batch:
            return read


async def pending(session: AsyncSession, *, cutoff: int, tz: Any, label: str,
                  before: datetime) -> Counter[tuple[int, str]] | None:
    """The people a period (its label) reached that the roll-up has not counted yet, per
    area and role: the messages sent after the last one it read (up to the period's end,
    `before`), tallied as it would, nothing written. (One whose sending committed late,
    before that, waits for the next roll-up: a minute.)

    None when more than UNREAD_MAX are unread (the first count after an upgrade, a leader
    long away): tallying millions of messages here would hold them all in memory, so the
    caller counts from the messages themselves instead."""
    state = (await session.execute(select(ReachState.rolled_until, ReachState.last_id)
                                   .where(ReachState.cutoff == cutoff))).one_or_none()
    after = None if state is None or state[0] is None else (state[0], state[1] or 0)
    rows = [(sent_at, area, person) for sent_at, _, area, person in
            await (await session.connection()).execute(
                _sent(None, after, before).limit(UNREAD_MAX + 1))]
    if len(rows) > UNREAD_MAX:
        return None
    if not rows:
        return Counter()
    months_of = Months(cutoff, tz)
    known, roles = await _known_and_roles(
        session, rows, cutoff, {months_of(sent_at)[0] for sent_at, _, _ in rows})
    _, increments = tally(rows, known, roles, months_of)
    return Counter({(area, role): n for (period, area, role), n in increments.items()
                    if period == label})


def forget(person_id: int) -> Any:
    """The statement that forgets which months reached a person (their erasure); the
    counts, which name nobody, stay."""
    return delete(ReachYear).where(ReachYear.person_id == person_id)
