"""The committee's figures: what was received, classified, acknowledged and processed in a
period, per area and rolled up its subtree, and how far the awareness messages reached.

Every figure is aggregated by the database (GROUP BY over covering indexes; the percentiles
are read off per-bucket counts), never by loading cases: a province-wide year is hundreds of
thousands of cases. Each area is mapped to the row it is counted in (each child area of the
chosen one is a row, its whole subtree summed in it; cases of the chosen area itself are a
row of their own). On PostgreSQL the report's parts run side by side on a few connections
that share one snapshot. Statistics never carry descriptions, names or anything that could
identify a child or a reporter: references are the only link to a case.

Access is checked by the case service (`CaseService.statistics`); this module computes.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    case,
    cast,
    column,
    distinct,
    false,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import outreach as outreach_kept
from bot.services.periods import Period
from storage.models import (
    CATEGORIES,
    Account,
    Area,
    Incident,
    IncidentEvent,
    Outbox,
    ReachCount,
    Role,
    RoleAssignment,
    School,
    SchoolParents,
)

CONFIRM_WAIT = timedelta(days=7)  # a school that has not answered in 7 days: "unanswered"
LISTED_MAX = 1000  # references listed (unclassified, backlog); the counts are always whole
OUTREACH_ROLES = (Role.PARENT, Role.LIAISON, Role.OFFICER, Role.ADMIN)
NO_LEVEL = "-"


def share(part: int, whole: int) -> float | None:
    """part of whole in percent, one decimal (None when there is nothing to divide by)."""
    return None if whole == 0 else round(100.0 * part / whole, 1)


def change_percent(now: int, before: int) -> float | None:
    """The change against a year earlier, in percent (None when there was nothing then)."""
    return None if before == 0 else round(100.0 * (now - before) / before, 1)


@dataclass
class Row:
    """The figures of one row: a child area's whole subtree, or the total."""

    code: str
    name: str
    received: int = 0
    urgent: int = 0
    anonymous: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    by_school_level: dict[str, int] = field(default_factory=dict)
    classified: int = 0  # received with a category other than "other"
    acknowledged: int = 0
    ack_median_minutes: float | None = None
    ack_p90_minutes: float | None = None
    escalated: int = 0
    closed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    closed_with_outcome: int = 0
    closed_within_target: int = 0
    backlog: int = 0
    confirmed: int = 0
    disputed: int = 0
    unconfirmed: int = 0  # asked more than 7 days ago, no answer
    year_earlier_received: int = 0
    outreach: dict[str, int] = field(default_factory=dict)
    outreach_people: int = 0
    parents_registered: int = 0

    def add(self, other: Row) -> None:
        """Sum another row's counts into this one (for the total)."""
        for name, value in vars(other).items():
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, getattr(self, name) + value)
        for name in ("by_category", "by_school_level", "by_outcome", "outreach"):
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + value

    @property
    def resolution_rate(self) -> float | None:
        """Closed in the period ÷ received in the period, in percent."""
        return share(self.closed, self.received)

    def to_json(self) -> dict[str, Any]:
        """The row as the JSON contract writes it."""
        return {
            "area": {"code": self.code, "name": self.name},
            "received": self.received, "urgent": self.urgent, "anonymous": self.anonymous,
            "by_category": self.by_category, "by_school_level": self.by_school_level,
            "classified": self.classified,
            "classified_percent": share(self.classified, self.received),
            "acknowledged": self.acknowledged,
            "ack_median_minutes": self.ack_median_minutes,
            "ack_p90_minutes": self.ack_p90_minutes,
            "escalated": self.escalated,
            "closed": self.closed, "by_outcome": self.by_outcome,
            "closed_with_outcome_percent": share(self.closed_with_outcome, self.closed),
            "resolution_rate_percent": self.resolution_rate,
            "closed_within_target": self.closed_within_target,
            "closed_within_target_percent": share(self.closed_within_target, self.closed),
            "backlog": self.backlog,
            "school_confirmation": {"confirmed": self.confirmed, "disputed": self.disputed,
                                    "unanswered_after_7_days": self.unconfirmed},
            "year_earlier_received": self.year_earlier_received,
            "change_percent": change_percent(self.received, self.year_earlier_received),
            "outreach": {"people": self.outreach_people, "by_role": self.outreach},
            "parents_registered": self.parents_registered,
        }


@dataclass(frozen=True)
class Overdue:
    """A case open past its resolution target at the period's end."""

    ref: str
    area: str
    days_open: int


@dataclass(frozen=True)
class SchoolReach:
    """Parents registered at one school."""

    code: str
    name: str
    area: str
    parents: int


@dataclass
class Report:
    """Everything the committee reads for one period and one area."""

    period: Period
    area_code: str | None
    area_name: str
    as_of: datetime  # the period's end, or now while it runs
    complete: bool
    rows: list[Row]
    total: Row
    categories_year_earlier: dict[str, int]
    ack_urgent_median_minutes: float | None
    ack_urgent_p90_minutes: float | None
    unclassified: list[str]
    unclassified_count: int
    overdue: list[Overdue]
    schools: list[SchoolReach]

    def to_json(self) -> dict[str, Any]:
        """The contract of `safeschool stats --format json`."""
        categories = []
        for category in CATEGORIES:
            now = self.total.by_category.get(category, 0)
            before = self.categories_year_earlier.get(category, 0)
            categories.append({"category": category, "received": now, "year_earlier": before,
                               "change_percent": change_percent(now, before)})
        return {
            "period": {**self.period.to_json(), "complete": self.complete,
                       "as_of": self.as_of.isoformat()},
            "area": {"code": self.area_code, "name": self.area_name},
            "areas": [row.to_json() for row in self.rows],
            "total": self.total.to_json(),
            "categories": categories,
            "acknowledgement_urgent": {"median_minutes": self.ack_urgent_median_minutes,
                                       "p90_minutes": self.ack_urgent_p90_minutes},
            "unclassified": {"count": self.unclassified_count, "refs": self.unclassified},
            "backlog": [{"ref": o.ref, "area": o.area, "days_open": o.days_open}
                        for o in self.overdue],
            "parents_by_school": [{"code": s.code, "name": s.name, "area": s.area,
                                   "parents": s.parents} for s in self.schools],
        }


def _seconds_between(session: AsyncSession, later: Any, earlier: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":  # date_part: a double, not numeric
        return func.date_part("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


@dataclass
class _Tree:
    """Every area under the report's root mapped to the row it is counted in (the child of
    root it lies under, or root itself)."""

    rows: Any  # (id, top) rows the statements join
    tops: dict[int, Area]  # the row areas by id
    ids: list[int] | None  # every area's id, when the rows are literal (PostgreSQL)

    def only(self, query: Any) -> Any:
        """Keep a listing's cases to the tree. A listing reads a few cases in time order
        and stops: PostgreSQL, joining literal rows under a LIMIT, compared each case with
        every area; a list of constants it hashes."""
        if self.ids is None:
            return query.join(self.rows, Incident.area_id == self.rows.c.id)
        return query.where(Incident.area_id.in_(
            bindparam("tree_ids", self.ids, expanding=True, literal_execute=True)))


async def _tree(session: AsyncSession, root: Area | None) -> _Tree:
    """The report's area tree (see _Tree)."""
    if root is None:
        tops = list((await session.execute(
            select(Area).where(Area.parent_id.is_(None)).order_by(Area.code))).scalars())
    else:
        tops = [root, *(await session.execute(
            select(Area).where(Area.parent_id == root.id).order_by(Area.code))).scalars()]
    by_id = {area.id: area for area in tops}
    if session.get_bind().dialect.name != "postgresql":
        # A recursive query, which SQLite plans well (it indexes the result on the fly).
        base = select(Area.id.label("id"), Area.id.label("top"))
        base = base.where(Area.parent_id.is_(None)) if root is None else base.where(
            or_(Area.id == root.id, Area.parent_id == root.id))
        tree = base.cte("tree", recursive=True)
        below = select(Area.id, tree.c.top).join(tree, Area.parent_id == tree.c.id)
        if root is not None:
            below = below.where(tree.c.id != root.id)  # the root's children: rows of their own
        return _Tree(tree.union_all(below), by_id, None)
    # PostgreSQL guesses a recursive query's size badly (16,000 rows for 1,000) and on that
    # guess hashed a year of cases instead of the areas: the tree is walked here, from one
    # read of the areas' parents, and handed over as literal rows, whose count it knows.
    children: dict[int | None, list[int]] = defaultdict(list)
    for area_id, parent_id in (await session.execute(select(Area.id, Area.parent_id))).all():
        children[parent_id].append(area_id)
    pairs: list[tuple[int, int]] = []
    seen: set[int] = set()
    stack = [(area.id, area.id) for area in tops]
    while stack:
        area_id, top = stack.pop()
        if area_id in seen:
            continue
        seen.add(area_id)
        pairs.append((area_id, top))
        if root is None or area_id != root.id:  # the root's children: rows of their own
            stack.extend((child, top) for child in children[area_id])
    if not pairs:  # no areas at all: a tree with no rows
        return _Tree(select(Area.id.label("id"), Area.id.label("top")).where(false())
                     .cte("tree"), {}, None)
    # Written out once as SQL text (whole numbers from the database only): a VALUES
    # construct is compiled again for every statement, 0.5 s for a province's 1,000 areas.
    rows = ", ".join(f"({int(area_id)}, {int(top)})" for area_id, top in pairs)
    tree = (text(f"SELECT column1 AS id, column2 AS top FROM (VALUES {rows}) AS pairs")
            .columns(column("id", Integer), column("top", Integer)).cte("tree"))
    return _Tree(tree, by_id, [area_id for area_id, _ in pairs])


async def _read(session: AsyncSession, statement: Any) -> Any:
    """Run a statement of plain columns on the session's connection: no ORM rows (for a
    province's 50,000 schools they cost a tenth of a second)."""
    return await (await session.connection()).execute(statement)


def _whole(session: AsyncSession, value: Any) -> Any:
    """The whole part of a non-negative number (PostgreSQL's CAST rounds, SQLite's cuts)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(value), Integer)
    return cast(value, Integer)


async def _percentiles(session: AsyncSession, tree: Any, start: datetime,
                       end: datetime) -> dict[Any, tuple[float | None, float | None]]:
    """Median and 90th percentile (nearest rank) of minutes to acknowledge: per row (keyed
    by the row's area id), in all ("all") and for urgent cases ("urgent").

    The database counts the cases per row, urgency and time bucket (the minute under two
    hours, five minutes under a day, the hour beyond: what a report shows), and the ranks
    are read off those counts. Sorting every case once per ordering, the way a window
    function does, took seconds for a province's year on SQLite."""
    # Whole seconds first: julianday's floating point makes 4 minutes 239.99999… seconds.
    seconds = func.round(_seconds_between(session, Incident.acknowledged_at,
                                          Incident.created_at))
    minutes = case(
        (seconds < 7200, _whole(session, seconds / 60)),
        (seconds < 86400, _whole(session, seconds / 300) * 5),
        else_=_whole(session, seconds / 3600) * 60)
    result = await _read(session,
        select(tree.c.top, Incident.urgent, minutes.label("m"), func.count())
        .select_from(Incident).join(tree, tree.c.id == Incident.area_id)
        .where(Incident.created_at >= start, Incident.created_at < end,
               Incident.acknowledged_at.is_not(None))
        .group_by(tree.c.top, Incident.urgent, minutes))
    counts: dict[Any, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for top, urgent, m, n in result:
        for key in (top, "all", "urgent") if urgent else (top, "all"):
            counts[key][int(m)] += n
    found: dict[Any, tuple[float | None, float | None]] = {}
    for key, histogram in counts.items():
        total = sum(histogram.values())
        ranks = [(total + 1) // 2, (total * 9 + 9) // 10]  # ceil(p·n), in integers
        values: list[float | None] = [None, None]
        seen = 0
        for m in sorted(histogram):
            seen += histogram[m]
            for i, rank in enumerate(ranks):
                if values[i] is None and seen >= rank:
                    values[i] = float(m)
        found[key] = (values[0], values[1])
    return found


SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")
LANES = 3  # connections a report reads on at once (PostgreSQL): the work is mostly 2 cores'


async def _side_by_side(session: AsyncSession,
                        parts: list[Callable[[AsyncSession], Awaitable[None]]]) -> None:
    """Run the parts of a report. On PostgreSQL, on up to LANES connections at once, each
    importing this transaction's snapshot (pg_export_snapshot), so every figure is read
    from the same moment, as if by one statement; elsewhere one after another on session
    (SQLite reads with one connection)."""
    engine = session.bind
    if engine is None or engine.dialect.name != "postgresql" or len(parts) < 2:
        for part in parts:
            await part(session)
        return
    snapshot = (await session.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
    if not SNAPSHOT_ID.fullmatch(snapshot):  # written into the statement: never anything else
        raise ValueError("unexpected snapshot identifier")
    waiting = list(parts)

    async def lane() -> None:
        async with AsyncSession(engine) as reader, reader.begin():
            await reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            await reader.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            while waiting:
                await waiting.pop(0)(reader)

    await asyncio.gather(*(lane() for _ in range(min(LANES, len(parts)))))


async def compute(session: AsyncSession, period: Period, root: Area | None, *, now: datetime,
                  tz: Any) -> Report:
    """Compute every figure of the period for root's subtree (every area when None)."""
    start, end = period.bounds(tz)
    as_of = min(end, now).astimezone(tz)  # the contract writes local times
    areas = await _tree(session, root)
    tree, tops = areas.rows, areas.tops
    rows: dict[int, Row] = {i: Row(a.code, a.name) for i, a in tops.items()}
    in_tree = [Incident.area_id == tree.c.id]

    def row(top: int) -> Row:
        return rows[top]

    received = [Incident.created_at >= start, Incident.created_at < end]

    async def receipts(session: AsyncSession) -> None:
        """Received, by category, school level, urgency and anonymity; acknowledged,
        escalated."""
        result = await _read(session,
            select(tree.c.top, Incident.category, School.level, Incident.urgent,
                   Incident.anonymous, func.count(), func.count(Incident.acknowledged_at),
                   func.count(Incident.escalated_at))
            .select_from(Incident).join(tree, *in_tree)
            .join(School, School.id == Incident.school_id)
            .where(*received)
            .group_by(tree.c.top, Incident.category, School.level, Incident.urgent,
                      Incident.anonymous))
        for top, category, level, urgent, anonymous, n, acked, escalated in result:
            r = row(top)
            r.received += n
            r.urgent += n if urgent else 0
            r.anonymous += n if anonymous else 0
            r.by_category[category] = r.by_category.get(category, 0) + n
            level = level or NO_LEVEL
            r.by_school_level[level] = r.by_school_level.get(level, 0) + n
            r.classified += 0 if category == "other" else n
            r.acknowledged += acked
            r.escalated += escalated

    async def processed(session: AsyncSession) -> None:
        """Closed in the period (whenever received), by outcome, within the target, and
        what the school said about it; disputes, which are events (a disputed case is
        reopened and may be closed again later)."""
        within = and_(Incident.resolution_due_at.is_not(None),
                      Incident.closed_at <= Incident.resolution_due_at)
        unanswered = and_(Incident.confirmation == "asked",
                          Incident.confirmation_asked_at < now - CONFIRM_WAIT)
        result = await _read(session,
            select(tree.c.top, Incident.outcome, func.count(),
                   func.count(case((within, 1))),
                   func.count(case((Incident.confirmation == "confirmed", 1))),
                   func.count(case((unanswered, 1))))
            .select_from(Incident).join(tree, *in_tree)
            .where(Incident.closed_at >= start, Incident.closed_at < end)
            .group_by(tree.c.top, Incident.outcome))
        for top, outcome, n, in_time, confirmed, not_answered in result:
            r = row(top)
            r.closed += n
            if outcome:
                r.by_outcome[outcome] = r.by_outcome.get(outcome, 0) + n
                r.closed_with_outcome += n
            r.closed_within_target += in_time
            r.confirmed += confirmed
            r.unconfirmed += not_answered
        result = await _read(session,
            select(tree.c.top, func.count(distinct(IncidentEvent.incident_id)))
            .select_from(IncidentEvent).join(Incident, Incident.id == IncidentEvent.incident_id)
            .join(tree, *in_tree)
            .where(IncidentEvent.kind == "disputed", IncidentEvent.at >= start,
                   IncidentEvent.at < end)
            .group_by(tree.c.top))
        for top, n in result:
            row(top).disputed += n

    # Backlog: open at the period's end (or now) and past the resolution target by then.
    open_then = [Incident.created_at < as_of,
                 or_(Incident.closed_at.is_(None), Incident.closed_at >= as_of),
                 Incident.resolution_due_at < as_of]
    overdue: list[Overdue] = []
    unclassified: list[str] = []

    async def backlog(session: AsyncSession) -> None:
        result = await _read(session,
            select(tree.c.top, func.count()).select_from(Incident).join(tree, *in_tree)
            .where(*open_then).group_by(tree.c.top))
        for top, n in result:
            row(top).backlog += n
        listed = await _read(session, areas.only(
            select(Incident.ref, Area.name, Incident.created_at).select_from(Incident)
            .join(Area, Area.id == Incident.area_id).where(*open_then)
            .order_by(Incident.created_at, Incident.id).limit(LISTED_MAX)))
        overdue.extend(Overdue(ref, area, (as_of - created).days)
                       for ref, area, created in listed)
        unclassified.extend((await _read(session, areas.only(
            select(Incident.ref).select_from(Incident)
            .where(*received, Incident.category == "other")
            .order_by(Incident.created_at, Incident.id).limit(LISTED_MAX)))).scalars())

    # The same period a year earlier, per row and per category.
    categories_before: dict[str, int] = {}

    async def year_earlier(session: AsyncSession) -> None:
        before_start, before_end = period.year_earlier().bounds(tz)
        result = await _read(session,
            select(tree.c.top, Incident.category, func.count()).select_from(Incident)
            .join(tree, *in_tree)
            .where(Incident.created_at >= before_start, Incident.created_at < before_end)
            .group_by(tree.c.top, Incident.category))
        for top, category, n in result:
            row(top).year_earlier_received += n
            categories_before[category] = categories_before.get(category, 0) + n

    ranks: dict[Any, tuple[float | None, float | None]] = {}

    async def acknowledgement(session: AsyncSession) -> None:
        ranks.update(await _percentiles(session, tree, start, end))

    total_reach: dict[str, int] = {}
    reach_all: list[int] = []

    async def kept_outreach(session: AsyncSession) -> None:
        """People who were sent at least one awareness message in the period, per row and
        role: the counts the outreach roll-up keeps, with what it has not read yet (see
        bot/services/outreach.py). Each person is in one row, so rows add up. While the
        roll-up is far behind, counted from the messages themselves (`outreach`)."""
        cutoff = period.first.day  # a standard period starts on the cut-off day
        unread = await outreach_kept.pending(session, cutoff=cutoff, tz=tz,
                                             label=period.label, before=end)
        if unread is None:
            await outreach(session)
            return
        counts: Counter[tuple[int, str]] = Counter()
        for top, role, n in await _read(session,
                select(tree.c.top, ReachCount.role, func.sum(ReachCount.people))
                .select_from(ReachCount).join(tree, tree.c.id == ReachCount.area_id)
                .where(ReachCount.cutoff == cutoff, ReachCount.period == period.label)
                .group_by(tree.c.top, ReachCount.role)):
            counts[(top, role)] += int(n)
        if unread:
            tops_of = dict((await _read(session, select(tree.c.id, tree.c.top).where(
                tree.c.id.in_(sorted({area for area, _ in unread}))))).all())
            for (area, role), n in unread.items():
                if area in tops_of:
                    counts[(tops_of[area], role)] += n
        for (top, role), n in counts.items():
            if role == outreach_kept.ANY_ROLE:
                row(top).outreach_people += n
                reach_all.append(n)
            else:
                row(top).outreach[role] = row(top).outreach.get(role, 0) + n
                total_reach[role] = total_reach.get(role, 0) + n

    async def outreach(session: AsyncSession) -> None:
        """People who were sent at least one awareness message in a custom range (or in a
        period the roll-up is far behind on), per row and role, per row, per role and in
        all, read off the messages themselves (here a person reached in two rows is in both):
        one statement over the distinct (row, person)
        pairs, which both databases materialise once. Rows that are distinct already are
        counted as they are; the totals across rows take their own distinct (a hash, where
        COUNT(DISTINCT) sorts)."""
        sent = (select(Outbox.area_id, Outbox.account_id)  # read off the outreach index
                .where(Outbox.campaign_run_id.is_not(None),  # sent_at: set when sent
                       Outbox.sent_at >= start, Outbox.sent_at < end)
                .distinct()).subquery()
        reached = (select(tree.c.top.label("top"), Account.person_id.label("person_id"))
                   .select_from(sent).join(Account, Account.id == sent.c.account_id)
                   .join(tree, tree.c.id == sent.c.area_id)
                   .distinct()).cte("reached")
        roles = (select(reached.c.top, reached.c.person_id, RoleAssignment.role)
                 .join(RoleAssignment, RoleAssignment.person_id == reached.c.person_id)
                 .distinct()).cte("reached_roles")
        people = select(reached.c.person_id).distinct().subquery()
        people_roles = select(roles.c.person_id, roles.c.role).distinct().subquery()
        result = await _read(session, union_all(
            select(literal("row_role"), roles.c.top, roles.c.role, func.count())
            .group_by(roles.c.top, roles.c.role),
            select(literal("row"), reached.c.top, literal(None), func.count())
            .group_by(reached.c.top),
            select(literal("role"), literal(None), people_roles.c.role, func.count())
            .group_by(people_roles.c.role),
            select(literal("all"), literal(None), literal(None), func.count())
            .select_from(people)))
        for kind, top, role, n in result:
            if kind == "row_role":
                row(top).outreach[role] = n
            elif kind == "row":
                row(top).outreach_people = n
            elif kind == "role":
                total_reach[role] = n
            else:
                reach_all.append(n)

    schools: list[SchoolReach] = []

    async def parents_by_school(session: AsyncSession) -> None:
        """Parents registered per school (as of the period's end): each school's total,
        kept by the database as parents register, less those registered since."""
        since = (select(RoleAssignment.school_id, func.count().label("n"))
                 .where(RoleAssignment.role == Role.PARENT, RoleAssignment.created_at >= as_of)
                 .group_by(RoleAssignment.school_id)).subquery()
        result = await _read(session,
            select(tree.c.top, School.code, School.name, Area.name,
                   func.coalesce(SchoolParents.parents, 0) - func.coalesce(since.c.n, 0))
            .select_from(School).join(tree, tree.c.id == School.area_id)
            .join(Area, Area.id == School.area_id)
            .outerjoin(SchoolParents, SchoolParents.school_id == School.id)
            .outerjoin(since, since.c.school_id == School.id)
            .order_by(School.area_id, School.id))  # a collated sort of 50,000 names: 0.3 s
        for top, code, name, area_name, n in result:
            row(top).parents_registered += n
            schools.append(SchoolReach(code, name, area_name, n))

    # The heaviest first: on PostgreSQL they run side by side, the lightest filling in.
    await _side_by_side(session, [outreach if period.kind == "custom" else kept_outreach,
                                  receipts, acknowledgement, parents_by_school,
                                  processed, backlog, year_earlier])
    for top, r in rows.items():
        r.ack_median_minutes, r.ack_p90_minutes = ranks.get(top, (None, None))
    overall = ranks.get("all", (None, None))
    urgent = ranks.get("urgent", (None, None))
    total_people = sum(reach_all)

    total = Row("", "")
    ordered = [rows[i] for i in tops]
    if root is not None and not _has_any(rows[root.id]):
        ordered = ordered[1:]  # no cases or schools of its own: no row of its own
    for r in rows.values():
        total.add(r)
    total.ack_median_minutes, total.ack_p90_minutes = overall
    total.outreach, total.outreach_people = total_reach, total_people
    return Report(period=period, area_code=root.code if root else None,
                  area_name=root.name if root else "", as_of=as_of, complete=end <= now,
                  rows=ordered, total=total, categories_year_earlier=categories_before,
                  ack_urgent_median_minutes=urgent[0], ack_urgent_p90_minutes=urgent[1],
                  unclassified=unclassified,
                  unclassified_count=total.received - total.classified,
                  overdue=overdue, schools=schools)


def _has_any(row: Row) -> bool:
    return any((row.received, row.closed, row.backlog, row.parents_registered,
                row.outreach_people, row.year_earlier_received))

