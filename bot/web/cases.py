"""Vụ việc: the cases a person covers, filtered and paginated; one case with its timeline and
the chat's actions (acknowledge, note, ask the reporter, reassign, close, reopen)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select

from bot.services.cases import (
    OPEN,
    TEXT_MAX,
    CaseFilter,
    NoSuchCase,
    occurred_text,
    officer_scope,
)
from bot.web.base import Page, page_of, query_string, see_other
from bot.web.dashboard import chosen_period
from storage import crypto
from storage.areas import subtree
from storage.models import CATEGORIES, OUTCOMES, Area, IncidentStatus, Role, School

routes = web.RouteTableDef()
PER_PAGE = 25
DONE = {"ack", "note", "ask", "reassign", "close", "reopen"}
PROBLEMS = {"already_taken", "text_needed", "not_closed", "stale_candidate", "outcome_needed",
            "duplicate_unknown"}
STATUSES = (OPEN, *IncidentStatus)


async def _filter(page: Page) -> tuple[CaseFilter, dict[str, str]]:
    """Read the filter from the query; what cannot be read is ignored and said so."""
    query = page.request.query
    problems: dict[str, str] = {}
    status = query.get("status") or None
    if status not in (None, *STATUSES):
        problems["status"] = status or ""
        status = None
    category = query.get("category") or None
    if category not in (None, *CATEGORIES):
        problems["category"] = category or ""
        category = None
    urgent = {"yes": True, "no": False}.get(query.get("urgent", ""))
    area_ids = None
    if query.get("area"):
        area = (await page.db.execute(select(Area).where(
            Area.code == query["area"].strip()))).scalar_one_or_none()
        if area is None:
            problems["area"] = query["area"]
        else:
            area_ids = tuple(await subtree(page.db, [area.id]))
    school_id = None
    if query.get("school"):
        school = (await page.db.execute(select(School).where(
            School.code == query["school"].strip()))).scalar_one_or_none()
        if school is None:
            problems["school"] = query["school"]
        else:
            school_id = school.id
    period = None
    if query.get("period") or query.get("from") or query.get("to"):
        period, problem = chosen_period(page)
        if problem:
            problems["period"] = query.get("period", "")
            period = None
    return CaseFilter(status, category, urgent, area_ids, school_id, period), problems


async def _areas(page: Page) -> list[Area]:
    """The areas a person's lists can be narrowed to (what they cover)."""
    scope = await officer_scope(page.db, page.person, (Role.OFFICER, Role.ADMIN))
    return list((await page.db.execute(select(Area).where(Area.id.in_(scope))
                                       .order_by(Area.code))).scalars())


@routes.get("/cases")
async def case_list(request: web.Request) -> web.Response:
    """The case list (the table alone when htmx asks, as the filters change)."""
    page = page_of(request)
    found, problems = await _filter(page)
    try:
        number = max(1, int(request.query.get("page", "1")))
    except ValueError:
        number = 1
    rows, total = await page.cases.search(page.actor, found, limit=PER_PAGE,
                                          offset=(number - 1) * PER_PAGE)
    pages = max(1, math.ceil(total / PER_PAGE))
    template = "cases_table.html" if request.headers.get("HX-Request") else "cases.html"
    return page.render(template, nav="cases", rows=rows, total=total, number=number, pages=pages,
                       problems=problems, statuses=STATUSES, categories=CATEGORIES,
                       areas=await _areas(page), query=request.query,
                       prev_query=query_string(request, page=number - 1),
                       next_query=query_string(request, page=number + 1))


def _case_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise NoSuchCase(request.match_info["id"]) from None


@routes.get("/cases/{id}")
async def case_page(request: web.Request) -> web.Response:
    """One case, as the person may see it; the look is recorded by the case service."""
    page = page_of(request)
    view = await page.cases.show(page.actor, _case_id(request))
    candidates = []
    if view.incident.status != IncidentStatus.CLOSED:
        _, candidates = await page.cases.reassign_candidates(page.actor, view.incident.id)
    incident = view.incident
    return page.render("case.html", nav="cases", view=view, incident=incident,
                       occurred=occurred_text(page.t, incident.occurred, incident.created_at,
                                              page.now, page.deps.settings.tz),
                       outcomes=OUTCOMES,
                       candidates=candidates, text_max=TEXT_MAX,
                       done=request.query.get("done") if request.query.get("done") in DONE
                       else None,
                       problem=request.query.get("problem")
                       if request.query.get("problem") in PROBLEMS else None)


# A file from a case opens in the browser only when it is something a browser shows safely;
# anything else is downloaded. Its own CSP keeps a crafted file from running anything.
INLINE = ("image/jpeg", "image/png", "image/webp", "image/gif", "audio/ogg", "audio/mpeg",
          "audio/mp4", "audio/aac", "video/mp4", "application/pdf")
FILE_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
                "Referrer-Policy": "no-referrer"}


@routes.get("/cases/{id}/files/{file}")
async def case_file(request: web.Request) -> web.StreamResponse:
    """A photo, voice note or document of a case, for someone who may work on it."""
    page = page_of(request)
    try:
        file_id = int(request.match_info["file"])
    except ValueError:
        raise NoSuchCase(request.match_info["file"]) from None
    item = await page.cases.attachment(page.actor, _case_id(request), file_id)
    path = await asyncio.to_thread(_kept, Path(page.deps.settings.media_dir), item.stored_path)
    if path is None:
        return page.render("message.html", status=404, message_key="console.file_not_kept",
                           back=f"/console/cases/{item.incident_id}")
    mime = item.mime_type or "application/octet-stream"
    disposition = "inline" if mime in INLINE else "attachment"
    name = item.name or f"{item.kind}-{item.id}{path.suffix}"
    body = await asyncio.to_thread(crypto.read_file, path)  # kept files are encrypted
    return web.Response(body=body, headers={
        **FILE_HEADERS, "Content-Type": mime,
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}"})


def _kept(media_dir: Path, stored: str | None) -> Path | None:
    """Our copy of a file, if it exists and lies inside the media folder."""
    if not stored:
        return None
    path = Path(stored).resolve()
    return path if path.is_relative_to(media_dir.resolve()) and path.is_file() else None


async def _text(request: web.Request, name: str = "text") -> str | None:
    form = await request.post()
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    return text if 0 < len(text) <= TEXT_MAX else None


@routes.post("/cases/{id}/{action}")
async def act(request: web.Request) -> web.Response:
    """Do what the chat's buttons do, through the same service calls."""
    page = page_of(request)
    case_id = _case_id(request)
    action = request.match_info["action"]
    service, actor = page.cases, page.actor
    back = f"/console/cases/{case_id}"
    form = await request.post()
    if action == "ack":
        _, took = await service.acknowledge(actor, case_id)
        page.changed()
        return see_other(back, done="ack" if took else None,
                         problem=None if took else "already_taken")
    if action in ("note", "ask", "reopen"):
        text = await _text(request)
        if text is None:
            await service.may_work(actor, case_id, action)
            return see_other(back, problem="text_needed")
        if action == "note":
            await service.note(actor, case_id, text)
        elif action == "ask":
            await service.ask(actor, case_id, text)
        elif await service.reopen(actor, case_id, text) is None:
            return see_other(back, problem="not_closed")
        page.changed()
        return see_other(back, done=action)
    if action == "reassign":
        try:
            person_id = int(str(form.get("person", "")))
        except ValueError:
            person_id = 0
        if await service.reassign(actor, case_id, person_id) is None:
            return see_other(back, problem="stale_candidate")
        page.changed()
        return see_other(back, done="reassign")
    if action == "close":
        outcome = str(form.get("outcome", ""))
        if outcome not in OUTCOMES:
            await service.may_work(actor, case_id, action)
            return see_other(back, problem="outcome_needed")
        try:
            await service.close(actor, case_id, outcome, str(form.get("duplicate", "")) or None)
        except NoSuchCase:
            # The case itself was allowed (checked first); the duplicate's reference was not.
            return see_other(back, problem="duplicate_unknown")
        page.changed()
        return see_other(back, done="close")
    raise web.HTTPNotFound()
