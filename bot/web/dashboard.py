"""Tổng quan: the period's statistics for the person's scope, open cases by age, what waits
for an acknowledgement, and (admins) paused channels and dead messages."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select

from bot.services import campaigns, console, periods, report_files, stat_reports
from bot.services.cases import AGE_BANDS, CaseService, NoSuchArea, Refused, officer_scope
from bot.services.statistics import Report, share
from bot.web.base import HEADERS, Page, page_of
from storage.models import Account, Area, Outbox, OutboxStatus, Role, RoleAssignment, School

routes = web.RouteTableDef()


def chosen_period(page: Page) -> tuple[periods.Period, str | None]:
    """The period in the query (2026-Q3, 2026-H1, 2026, 2026-11, or from/to dates), else the
    current quarter; with the reason it could not be read, if any."""
    settings = page.deps.settings
    query = page.request.query
    cutoff = settings.report_cutoff_day
    try:
        if query.get("from") or query.get("to"):
            return periods.custom(periods.parse_date(query.get("from", "")),
                                  periods.parse_date(query.get("to", ""))), None
        if query.get("period"):
            return periods.parse(query["period"], cutoff), None
    except periods.PeriodError:
        problem = "console.bad_period"
    else:
        problem = None
    today = page.now.astimezone(settings.tz).date()
    return periods.containing("quarter", today, cutoff), problem


async def statistics(page: Page, period: periods.Period) -> tuple[Report | None, list[Area]]:
    """The figures for the chosen area of the person's scope (None when they read none),
    and that scope; computed on the read-only connection, as the case service allows."""
    deps = page.deps
    area = page.request.query.get("area") or None
    async with deps.readers() as db:
        service = CaseService(db, now=page.now, tz=deps.settings.tz,
                              default_language=deps.settings.default_language)
        scope = await service.statistics_scope(page.actor)
        if not scope:
            return None, []
        try:
            return await service.statistics(page.actor, period, area or scope[0].code), scope
        except NoSuchArea:
            raise Refused("statistics") from None


async def dead_messages(page: Page) -> int:
    """Messages given up on: all of them for an admin of a root area (they are the ones told
    of each), else those to people of the admin's areas. A cancelled campaign's unsent
    messages are not failures."""
    stmt = select(func.count()).select_from(Outbox).where(
        Outbox.status == OutboxStatus.DEAD,
        or_(Outbox.last_error.is_(None), Outbox.last_error != campaigns.CANCELLED))
    admin_of = campaigns.admin_areas(page.person.roles)
    top = (await page.db.execute(select(func.count()).select_from(Area).where(
        Area.id.in_(admin_of), Area.parent_id.is_(None)))).scalar_one()
    if not top:
        scope = await officer_scope(page.db, page.person, (Role.ADMIN,))
        people = select(RoleAssignment.person_id).where(or_(
            RoleAssignment.area_id.in_(scope),
            RoleAssignment.school_id.in_(select(School.id).where(School.area_id.in_(scope)))))
        stmt = stmt.join(Account, Account.id == Outbox.account_id).where(
            or_(Account.person_id.in_(people), Outbox.area_id.in_(scope)))
    return (await page.db.execute(stmt)).scalar_one()


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    """The dashboard."""
    page = page_of(request)
    period, problem = chosen_period(page)
    report, scope = await statistics(page, period)
    overview = await page.cases.open_overview(page.actor)
    dead = paused = None
    if page.is_admin:
        dead = await dead_messages(page)
        paused = page.deps.paused(page.now)
    return page.render("dashboard.html", nav="dashboard", report=report, period=period,
                       problem=problem,
                       overview=overview, bands=[name for name, _ in AGE_BANDS], dead=dead,
                       paused=paused, scope=scope, figures=figures(page, report),
                       period_name=report_files.period_name(page.t, period),
                       quarters=recent_periods(page))


def figures(page: Page, report: Report | None) -> list[tuple[str, str]]:
    """The headline figures, as label and formatted value."""
    if report is None:
        return []
    t, total = page.t, report.total
    return [
        ("console.fig.received", report_files.number(t, total.received)),
        ("console.fig.urgent", report_files.number(t, total.urgent)),
        ("console.fig.classified",
         report_files.percent(t, share(total.classified, total.received))),
        ("console.fig.acknowledged", report_files.number(t, total.acknowledged)),
        ("console.fig.ack_median", report_files.duration(t, total.ack_median_minutes)),
        ("console.fig.escalated", report_files.number(t, total.escalated)),
        ("console.fig.closed", report_files.number(t, total.closed)),
        ("console.fig.resolution", report_files.percent(t, total.resolution_rate)),
        ("console.fig.within_target",
         report_files.percent(t, share(total.closed_within_target, total.closed))),
        ("console.fig.backlog", report_files.number(t, total.backlog)),
        ("console.fig.outreach", report_files.number(t, total.outreach_people)),
        ("console.fig.parents", report_files.number(t, total.parents_registered)),
    ]


def recent_periods(page: Page) -> list[tuple[str, str]]:
    """Periods offered in the picker: this quarter and the three before, this half, this
    year and last year (label, name)."""
    cutoff = page.deps.settings.report_cutoff_day
    today = page.now.astimezone(page.deps.settings.tz).date()
    found = [periods.containing("quarter", today, cutoff)]
    for _ in range(3):
        found.append(periods.previous(found[-1], cutoff))
    found.append(periods.containing("half", today, cutoff))
    this_year = periods.containing("year", today, cutoff)
    found += [this_year, periods.previous(this_year, cutoff)]
    return [(p.label, report_files.period_name(page.t, p)) for p in found]


async def _report_or_404(request: web.Request) -> tuple[Page, Report]:
    page = page_of(request)
    period, problem = chosen_period(page)
    if problem:
        raise web.HTTPBadRequest(text=page.t(problem))
    report, _ = await statistics(page, period)
    if report is None:
        raise Refused("statistics")
    return page, report


def _download(body: bytes, content_type: str, name: str, inline: bool) -> web.Response:
    disposition = "inline" if inline else "attachment"
    headers: dict[str, Any] = {**HEADERS,
                               "Content-Disposition": f'{disposition}; filename="{name}"'}
    return web.Response(body=body, content_type=content_type, headers=headers)


@routes.get("/chart.png")
async def chart(request: web.Request) -> web.Response:
    """The period's chart."""
    page, report = await _report_or_404(request)
    body = report_files.chart(page.t, report)
    return _download(body, "image/png", stat_reports.file_name(page.t.language, report.period,
                                                               "png"), inline=True)


@routes.get("/workbook.xlsx")
async def workbook(request: web.Request) -> web.Response:
    """The period's workbook, the same the chat and the command line give."""
    page, report = await _report_or_404(request)
    settings = page.deps.settings
    await console.audit(page.db, page.person.id, "statistics_exported",
                        f"{report.period.label} {report.area_code or ''}".strip(), page.now)
    body = report_files.workbook(page.t, report, settings.committee_name, settings.tz)
    return _download(body, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     stat_reports.file_name(page.t.language, report.period, "xlsx"),
                     inline=False)
