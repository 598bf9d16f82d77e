"""Nhật ký: who viewed or changed what (cases' access log and changes outside cases),
filterable by person, case reference and date, and exportable as CSV. Admins of a root
area only: the log names every case of the province."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from sqlalchemy import literal, select, union_all

from bot.services import periods
from bot.services.cases import Refused
from bot.web.base import HEADERS, Page, page_of
from storage.models import Area, AuditEvent, CaseAccess, Incident, Person, Role

routes = web.RouteTableDef()
SHOWN = 200


@dataclass(frozen=True)
class Line:
    """One line of the log."""

    at: datetime
    person: str
    via: str
    action: str
    subject: str


async def _root_admin(page: Page) -> None:
    roots = {a.id for a in (await page.db.execute(
        select(Area).where(Area.parent_id.is_(None)))).scalars()}
    if not any(r.role == Role.ADMIN and r.area_id in roots for r in page.person.roles):
        raise Refused("audit")


async def _lines(page: Page, limit: int | None) -> list[Line]:
    query = page.request.query
    cases = select(CaseAccess.at.label("at"), CaseAccess.person_id.label("person_id"),
                   CaseAccess.via.label("via"), CaseAccess.action.label("action"),
                   Incident.ref.label("subject"), CaseAccess.id.label("seq")).join(
        Incident, Incident.id == CaseAccess.incident_id)
    other = select(AuditEvent.at.label("at"), AuditEvent.person_id.label("person_id"),
                   AuditEvent.via.label("via"), AuditEvent.action.label("action"),
                   AuditEvent.subject.label("subject"), AuditEvent.id.label("seq"))
    if query.get("ref"):
        cases = cases.where(Incident.ref == query["ref"].strip().upper())
        other = other.where(literal(False))
    for name in ("from", "to"):
        if query.get(name):
            try:
                day = periods.parse_date(query[name])
            except periods.PeriodError:
                continue
            span = periods.custom(day, day).bounds(page.deps.settings.tz)
            if name == "from":
                cases, other = cases.where(CaseAccess.at >= span[0]), \
                    other.where(AuditEvent.at >= span[0])
            else:
                cases, other = cases.where(CaseAccess.at < span[1]), \
                    other.where(AuditEvent.at < span[1])
    both = union_all(cases, other).subquery()
    stmt = select(both, Person.name).outerjoin(Person, Person.id == both.c.person_id)
    if query.get("person"):
        stmt = stmt.where(Person.name.ilike(f"%{query['person'].strip()}%"))
    # Within one instant (a fast click, a frozen test clock) the later row of a table comes
    # first; without the tie-break PostgreSQL returns equal times in any order.
    stmt = stmt.order_by(both.c.at.desc(), both.c.seq.desc())
    if limit:
        stmt = stmt.limit(limit)
    rows = (await page.db.execute(stmt)).all()
    return [Line(r.at, r.name or (f"#{r.person_id}" if r.person_id else "—"), r.via, r.action,
                 r.subject or "") for r in rows]


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    """The latest lines that match."""
    page = page_of(request)
    await _root_admin(page)
    lines = await _lines(page, SHOWN)
    return page.render("audit.html", nav="audit", lines=lines, query=request.query,
                       shown=SHOWN, export=request.query_string)


@routes.get("/audit.csv")
async def export(request: web.Request) -> web.Response:
    """Every line that matches, as CSV (UTF-8 with BOM: Excel opens it in Vietnamese)."""
    page = page_of(request)
    await _root_admin(page)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    t = page.t
    writer.writerow([t("console.audit.at"), t("console.audit.person"), t("console.audit.via"),
                     t("console.audit.action"), t("console.audit.subject")])
    for line in await _lines(page, None):
        writer.writerow([page.local(line.at), line.person, line.via, line.action,
                         line.subject])
    return web.Response(text=out.getvalue(), headers={
        **HEADERS, "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="nhat-ky.csv"'})
