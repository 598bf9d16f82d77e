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
stopped; a message read twice changes nothing (its month is in the mask already).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import periods
from storage.db import insert_ignoring, upsert_insert
from storage.models import Account, Outbox, ReachCount, ReachState, ReachYear, RoleAssignment

MARGIN = timedelta(minutes=1)
BATCH = 2000  # messages to a transaction: on SQLite the roll-up holds the write lock this long
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


def tally(sent: Iterable[Sent], known: Known, roles: dict[int, set[str]], *, cutoff: int,
          tz: Any) -> tuple[Known, Increments]:
    """What the messages (in the order they were sent) change: the people's years whose
    months grew, and the people reached for the first time in each period."""
    grown: dict[tuple[int, int], list[int]] = {}
    for sent_at, area, person in sent:
        year, number = month_of(sent_at.astimezone(tz).date(), cutoff)
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
        for suffix, bits in SPANS:
            if months & bits and not before & bits:
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
    if after is not None:
        query = query.where(or_(Outbox.sent_at > after[0],
                                and_(Outbox.sent_at == after[0], Outbox.id > after[1])))
    if before is not None:
        query = query.where(Outbox.sent_at < before)
    return query


async def _known_and_roles(session: AsyncSession, rows: Sequence[Any], cutoff: int,
                           tz: Any) -> tuple[Known, dict[int, set[str]]]:
    people = sorted({row.person_id for row in rows})
    years = sorted({month_of(row.sent_at.astimezone(tz).date(), cutoff)[0] for row in rows})
    known: Known = {}
    roles: dict[int, set[str]] = {}
    for start in range(0, len(people), BATCH):
        chunk = people[start:start + BATCH]
        for person, year, area, months in await session.execute(
                select(ReachYear.person_id, ReachYear.year, ReachYear.area_id, ReachYear.months)
                .where(ReachYear.person_id.in_(chunk), ReachYear.cutoff == cutoff,
                       ReachYear.year.in_(years))):
            known[(person, year)] = (area, months)
        for person, role in await session.execute(
                select(RoleAssignment.person_id, RoleAssignment.role)
                .where(RoleAssignment.person_id.in_(chunk)).distinct()):
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
                  batch: int = BATCH) -> int:
    """Read the sent awareness messages the roll-up has not read; return how many it read.

    Each batch is one transaction that holds the cut-off's state row, so two roll-ups (a
    new leader's and an old one's last) take turns and never count a person twice."""
    read = 0
    after: tuple[datetime, int] | None = None
    while True:
        async with sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            await session.execute(insert_ignoring(dialect, ReachState, "cutoff"),
                                  {"cutoff": cutoff, "rolled_until": None})
            since = (await session.execute(
                select(ReachState.rolled_until).where(ReachState.cutoff == cutoff)
                .with_for_update())).scalar_one()
            rows = (await session.execute(_sent(since, after).limit(batch))).all()
            if not rows:
                return read
            known, roles = await _known_and_roles(session, rows, cutoff, tz)
            changed, increments = tally(((r.sent_at, r.area_id, r.person_id) for r in rows),
                                        known, roles, cutoff=cutoff, tz=tz)
            if changed:
                await session.execute(_years_upsert(dialect), [
                    {"person_id": person, "cutoff": cutoff, "year": year, "area_id": area,
                     "months": months} for (person, year), (area, months) in changed.items()])
            if increments:
                await session.execute(_counts_upsert(dialect), [
                    {"cutoff": cutoff, "period": label, "area_id": area, "role": role,
                     "people": n} for (label, area, role), n in increments.items()])
            last = rows[-1].sent_at
            await session.execute(update(ReachState).where(ReachState.cutoff == cutoff)
                                  .values(rolled_until=last if since is None
                                          else max(since, last)))
        read += len(rows)
        after = (rows[-1].sent_at, rows[-1].id)
        if len(rows) < batch:
            return read


async def pending(session: AsyncSession, *, cutoff: int, tz: Any, label: str,
                  before: datetime) -> Counter[tuple[int, str]]:
    """The people a period (its label) reached that the roll-up has not counted yet, per
    area and role: the messages it has not read (up to the period's end, `before`), tallied
    as it would, nothing written."""
    since = (await session.execute(select(ReachState.rolled_until)
                                   .where(ReachState.cutoff == cutoff))).scalar_one_or_none()
    rows = (await session.execute(_sent(since, None, before))).all()
    if not rows:
        return Counter()
    known, roles = await _known_and_roles(session, rows, cutoff, tz)
    _, increments = tally(((r.sent_at, r.area_id, r.person_id) for r in rows), known, roles,
                          cutoff=cutoff, tz=tz)
    return Counter({(area, role): n for (period, area, role), n in increments.items()
                    if period == label})


def forget(person_id: int) -> Any:
    """The statement that forgets which months reached a person (their erasure); the
    counts, which name nobody, stay."""
    return delete(ReachYear).where(ReachYear.person_id == person_id)
