"""The audit log, read: every look at a case (`case_access`) and every change outside one
(`audit_events`), newest first, filtered by case, person and time. The console's *Nhật ký*
and `safeschool audit` read it here, so both show the same lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import periods
from storage.models import AuditEvent, CaseAccess, Incident, Person


@dataclass(frozen=True)
class Line:
    """One line of the log: when, who (their name, else #id, else —), through what, what,
    and on what (a case's reference, or the subject of a change)."""

    at: datetime
    person: str
    person_id: int | None
    via: str
    action: str
    subject: str

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "person": self.person, "person_id": self.person_id,
                "via": self.via, "action": self.action, "subject": self.subject}


def day_bounds(text: str, tz: Any) -> tuple[datetime, datetime]:
    """The start and the end of a day typed as 2026-09-15 or 15/09/2026, in local time
    (PeriodError if it is not a date): the --from/--to of the log."""
    day = periods.parse_date(text)
    return periods.custom(day, day).bounds(tz)


async def lines(session: AsyncSession, *, ref: str | None = None,
                person_id: int | None = None, person_name: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                limit: int | None = None) -> list[Line]:
    """The lines that match, newest first. `ref` keeps only that case's looks; `person_id`
    only what that person did; `person_name` matches part of a name."""
    cases = select(CaseAccess.at.label("at"), CaseAccess.person_id.label("person_id"),
                   CaseAccess.via.label("via"), CaseAccess.action.label("action"),
                   Incident.ref.label("subject"), CaseAccess.id.label("seq")).join(
        Incident, Incident.id == CaseAccess.incident_id)
    other = select(AuditEvent.at.label("at"), AuditEvent.person_id.label("person_id"),
                   AuditEvent.via.label("via"), AuditEvent.action.label("action"),
                   AuditEvent.subject.label("subject"), AuditEvent.id.label("seq"))
    if ref:
        cases = cases.where(Incident.ref == ref.strip().upper())
        other = other.where(literal(False))
    if person_id is not None:
        cases = cases.where(CaseAccess.person_id == person_id)
        other = other.where(AuditEvent.person_id == person_id)
    if since is not None:
        cases, other = cases.where(CaseAccess.at >= since), other.where(AuditEvent.at >= since)
    if until is not None:
        cases, other = cases.where(CaseAccess.at < until), other.where(AuditEvent.at < until)
    both = union_all(cases, other).subquery()
    stmt = select(both, Person.name).outerjoin(Person, Person.id == both.c.person_id)
    if person_name:
        stmt = stmt.where(Person.name.ilike(f"%{person_name.strip()}%"))
    # Within one instant (a fast click, a frozen test clock) the later row of a table comes
    # first; without the tie-break PostgreSQL returns equal times in any order.
    stmt = stmt.order_by(both.c.at.desc(), both.c.seq.desc())
    if limit:
        stmt = stmt.limit(limit)
    rows = (await session.execute(stmt)).all()
    return [Line(r.at, r.name or (f"#{r.person_id}" if r.person_id else "—"), r.person_id,
                 r.via, r.action, r.subject or "") for r in rows]
