"""Nhật ký: who viewed or changed what (cases' access log and changes outside cases),
filterable by person, case reference and date, and exportable as CSV. Admins of a root
area only: the log names every case of the province."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from aiohttp import web
from sqlalchemy import select

from bot.services import audit as audit_log
from bot.services import console, periods
from bot.services.audit import Line
from bot.services.cases import Refused
from bot.web.base import HEADERS, Page, page_of
from storage.models import Area, Role

routes = web.RouteTableDef()
SHOWN = 200


async def _root_admin(page: Page) -> None:
    roots = {a.id for a in (await page.db.execute(
        select(Area).where(Area.parent_id.is_(None)))).scalars()}
    if not any(r.role == Role.ADMIN and r.area_id in roots for r in page.person.roles):
        raise Refused("audit")


async def _lines(page: Page, limit: int | None) -> list[Line]:
    query = page.request.query
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        if query.get(name):
            try:
                bounds[name] = audit_log.day_bounds(query[name], page.deps.settings.tz)[
                    0 if name == "from" else 1]
            except periods.PeriodError:
                continue
    return await audit_log.lines(page.db, ref=query.get("ref") or None,
                                 person_name=query.get("person") or None,
                                 since=bounds.get("from"), until=bounds.get("to"), limit=limit)


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
    await console.audit(page.db, page.person.id, "audit_exported",
                        request.query_string[:200] or None, page.now)
    return web.Response(text=out.getvalue(), headers={
        **HEADERS, "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="nhat-ky.csv"'})
