"""Tuyên truyền: the content library, creating a campaign with audience filters and a live
reach count, its preview, starting, pausing, resuming and cancelling it, and its outreach
per run and area. Admins only, for campaigns within their areas; every rule is the
campaign service's (the chat's /campaign and `safeschool campaign` use the same one)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import select

from bot.services import campaigns as svc
from bot.services import console
from bot.services.cases import Refused
from bot.services.content import ContentError, Item, library
from bot.services.timing import next_run
from bot.web.base import Page, page_of, see_other
from bot.web.directory import admin_scope
from storage.models import Area, Campaign, CampaignRun, CampaignStatus, Role, School

routes = web.RouteTableDef()
# How often, in words; each is a schedule the campaign service reads (an rrule takes its
# time of day from the first sending).
REPEATS = {"once": "once", "daily": "rrule: FREQ=DAILY", "weekly": "rrule: FREQ=WEEKLY",
           "monthly": "rrule: FREQ=MONTHLY"}
DONE = ("created", "start", "pause", "resume", "cancel", "preview")
SHOWN_RUNS = 12


def _own_areas(page: Page) -> list[int]:
    return svc.admin_areas(page.person.roles)


async def _areas_in_tree_order(page: Page, allowed: set[int]) -> list[tuple[Area, int]]:
    """The areas an admin may send to, parents before children, with their depth."""
    areas = (await page.db.execute(select(Area).where(Area.id.in_(allowed)))).scalars().all()
    children: dict[int | None, list[Area]] = {}
    for area in sorted(areas, key=lambda a: (a.name, a.code)):
        parent = area.parent_id if area.parent_id in allowed else None
        children.setdefault(parent, []).append(area)
    out: list[tuple[Area, int]] = []

    def walk(area: Area, depth: int) -> None:
        out.append((area, depth))
        for child in children.get(area.id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return out


async def _campaign(page: Page) -> Campaign:
    """The campaign of the URL, if every area it reaches is the admin's."""
    await admin_scope(page)
    try:
        campaign = await page.db.get(Campaign, int(page.request.match_info["id"]))
    except ValueError:
        campaign = None
    if campaign is None or not await svc.in_scope(page.db, campaign, _own_areas(page)):
        raise web.HTTPNotFound(text=page.t("console.campaigns.not_found"))
    return campaign


def _items() -> dict[str, Item]:
    try:
        return library()
    except ContentError:
        return {}


@routes.get("/campaigns")
async def campaign_list(request: web.Request) -> web.Response:
    """The admin's campaigns, newest first, and the content library."""
    page = page_of(request)
    await admin_scope(page)
    rows = await svc.within(page.db, (await page.db.execute(
        select(Campaign).order_by(Campaign.id.desc()).limit(200))).scalars(),
        _own_areas(page))
    return page.render("campaigns.html", nav="campaigns", campaigns=rows,
                       items=list(_items().values()), repeat=_repeat_name)


def _repeat_name(schedule: str) -> str:
    """once / daily / weekly / monthly, or custom for a cron or rrule written by hand."""
    for name, value in REPEATS.items():
        if schedule.strip().lower() == value.lower():
            return name
    return "custom"


async def _form_context(page: Page, values: dict[str, Any]) -> dict[str, Any]:
    allowed = await admin_scope(page)
    levels = sorted({lvl for lvl in (await page.db.execute(
        select(School.level).where(School.area_id.in_(allowed)).distinct())).scalars() if lvl})
    return {"areas": await _areas_in_tree_order(page, allowed), "levels": levels,
            "items": list(_items().values()), "values": values, "repeats": list(REPEATS),
            "roles": list(svc.ROLES), "languages": list(svc.LANGUAGES)}


def _defaults(page: Page) -> dict[str, Any]:
    return {"name": "", "area": [str(a) for a in _own_areas(page)], "role": [Role.PARENT],
            "level": [], "language": [], "content": [], "text_vi": "", "text_en": "",
            "image": "", "at": "", "repeat": "once", "until": "", "audience_ok": ""}


def _values(form: MultiMapping[Any]) -> dict[str, Any]:
    """The form as it was filled in (to fill it in again when something is wrong)."""
    many = ("area", "role", "level", "language", "content")
    values: dict[str, Any] = {k: [str(v) for v in form.getall(k, [])] for k in many}
    for key in ("name", "text_vi", "text_en", "image", "at", "repeat", "until", "audience_ok"):
        values[key] = str(form.get(key, "")).strip()
    return values


def _when(page: Page, text: str, *, end_of_day: bool = False) -> datetime | None:
    """A browser's datetime-local (2026-12-01T09:00) or date (2026-12-01), local time."""
    if not text:
        return None
    tz = page.deps.settings.tz
    try:
        if "T" in text:
            return datetime.fromisoformat(text).replace(tzinfo=tz)
        day = datetime.fromisoformat(text).date()
    except ValueError:
        raise svc.CampaignProblem("bad_time", text=text) from None
    return datetime.combine(day, time(23, 59) if end_of_day else time(0, 0), tz)


async def _draft(page: Page, values: dict[str, Any]) -> Campaign:
    """The form as a checked, unsaved campaign (CampaignProblem says what is wrong)."""
    allowed = await admin_scope(page)
    area_ids = [int(a) for a in values["area"] if a.isdigit() and int(a) in allowed]
    if len(area_ids) != len(values["area"]):
        raise Refused("area")  # a forged form: areas outside the admin's
    starts = _when(page, values["at"]) or page.now
    schedule = REPEATS.get(values["repeat"])
    if schedule is None:
        raise svc.CampaignProblem("bad_schedule", schedule=values["repeat"])
    return svc.new_campaign(svc.Draft(
        name=values["name"], area_ids=area_ids, roles=values["role"], starts_at=starts,
        schedule=schedule, content_ids=values["content"], text_vi=values["text_vi"],
        text_en=values["text_en"], image_url=values["image"], school_levels=values["level"],
        languages=values["language"], ends_at=_when(page, values["until"], end_of_day=True)),
        now=page.now, person_id=page.person.id)


@routes.get("/campaigns/new")
async def new_form(request: web.Request) -> web.Response:
    """The creation form, filled with what most campaigns use."""
    page = page_of(request)
    return page.render("campaign_new.html", nav="campaigns", problem=None,
                       **await _form_context(page, _defaults(page)))


@routes.post("/campaigns/reach")
async def live_reach(request: web.Request) -> web.Response:
    """How many people the form would reach now (htmx swaps it in as the form changes)."""
    page = page_of(request)
    values = _values(await request.post())
    # Who it reaches does not depend on its name or words, which may not be written yet.
    values["name"] = values["name"] or "-"
    if not (values["content"] or values["text_vi"] or values["text_en"]):
        values["text_vi"] = "-"
    try:
        draft = await _draft(page, values)
    except svc.CampaignProblem as problem:
        return page.render("campaign_reach.html", reach=None, problem=problem.text(page.t))
    found = await svc.reach(page.db, draft, page.deps.settings.default_language)
    return page.render("campaign_reach.html", reach=found, problem=None)


@routes.post("/campaigns")
async def create(request: web.Request) -> web.Response:
    """Save the form as a draft and show it (preview, reach, start)."""
    page = page_of(request)
    values = _values(await request.post())
    try:
        campaign = await _draft(page, values)
    except svc.CampaignProblem as problem:
        return page.render("campaign_new.html", status=422, nav="campaigns",
                           problem=problem.text(page.t), **await _form_context(page, values))
    warning = svc.audience_warning(page.t, values["content"], values["role"])
    if warning and values["audience_ok"] != "1":  # saved only once they confirm it
        return page.render("campaign_new.html", status=422, nav="campaigns", problem=None,
                           mismatch=warning, **await _form_context(page, values))
    page.db.add(campaign)
    await page.db.flush()
    await console.audit(page.db, page.person.id, "campaign_created", f"#{campaign.id}",
                        page.now, name=campaign.name)
    return see_other(f"/console/campaigns/{campaign.id}", done="created")


@routes.get("/campaigns/{id}")
async def show(request: web.Request) -> web.Response:
    """A campaign: what it says, to whom, when; what can be done to it; each run's outreach."""
    page = page_of(request)
    campaign = await _campaign(page)
    settings = page.deps.settings
    item = svc.content_for_run(campaign, campaign.runs_done)
    samples = {lang: svc.message_for(campaign, item, lang).text for lang in svc.LANGUAGES}
    found = None
    if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.ACTIVE, CampaignStatus.PAUSED):
        found = await svc.reach(page.db, campaign, settings.default_language)
    runs = (await page.db.execute(select(CampaignRun).where(
        CampaignRun.campaign_id == campaign.id).order_by(CampaignRun.id.desc())
        .limit(SHOWN_RUNS))).scalars().all()
    names = dict((await page.db.execute(select(Area.code, Area.name))).all())
    outreach = []
    for run in runs:
        stats = await svc.run_stats(page.db, run.id)
        outreach.append((run, svc.total(stats), stats))
    areas = [names.get(code, code) for code in (await page.db.execute(
        select(Area.code).where(Area.id.in_(campaign.area_ids)))).scalars()]
    upcoming = campaign.next_run_at
    if campaign.status == CampaignStatus.DRAFT:
        upcoming = next_run(campaign.schedule, page.now, campaign.starts_at, settings.tz) \
            if campaign.schedule != "once" else campaign.starts_at
    done = request.query.get("done")
    return page.render(
        "campaign.html", nav="campaigns", campaign=campaign, samples=samples, reach=found,
        outreach=outreach, names=names, areas=areas, upcoming=upcoming,
        actions=svc.allowed_actions(campaign), repeat=_repeat_name(campaign.schedule),
        done=done if done in DONE else None, items=_items(), problem=None)


@routes.post("/campaigns/{id}/preview")
async def preview(request: web.Request) -> web.Response:
    """Send the signed-in admin the message as its audience will read it."""
    page = page_of(request)
    campaign = await _campaign(page)
    settings = page.deps.settings
    await svc.send_preview(page.db, campaign, page.person.id, now=page.now,
                           default_language=settings.default_language,
                           quiet=settings.quiet_hours)
    page.changed()
    return see_other(f"/console/campaigns/{campaign.id}", done="preview")


@routes.post("/campaigns/{id}/{action:start|pause|resume|cancel}")
async def change(request: web.Request) -> web.Response:
    """Start a draft, pause, resume or cancel, as the chat and the CLI do."""
    page = page_of(request)
    campaign = await _campaign(page)
    action = request.match_info["action"]
    try:
        count = await svc.change(page.db, campaign, action, now=page.now,
                                 tz=page.deps.settings.tz)
    except svc.CampaignProblem as problem:
        return page.render("message.html", status=409, message_key=None,
                           message=problem.text(page.t),
                           back=f"/console/campaigns/{campaign.id}")
    await console.audit(page.db, page.person.id, f"campaign_{action}", f"#{campaign.id}",
                        page.now, messages=count)
    page.changed()
    return see_other(f"/console/campaigns/{campaign.id}", done=action)
