"""Leo thang: the escalation policy in force for each area and where it comes from (its own,
inherited from an area above, or the built-in default); admins edit an area's policy in a
form whose mistakes are named in the reader's language, or let it inherit again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy import select

from bot.services import console, escalation
from bot.services.cases import Refused, officer_scope
from bot.web.base import Page, page_of, see_other
from storage.models import Area, EscalationPolicy, Role

routes = web.RouteTableDef()
SPANS = ("repeat_every", "reminder_after", "revert_after", "resolution_target")
SPARE_STEPS = 2  # empty rows offered below a severity's steps, to add one
DONE = ("saved", "inherited")


@dataclass(frozen=True)
class Row:
    """One area in the list: how deep it sits and whose policy it follows."""

    area: Area
    depth: int
    source: Area | None  # None: the built-in default


async def _scopes(page: Page) -> tuple[set[int], set[int]]:
    """The areas the person may see (officers and admins) and may change (admins)."""
    seen = await officer_scope(page.db, page.person, (Role.OFFICER, Role.ADMIN))
    if not seen:
        raise Refused("escalation")
    return seen, await officer_scope(page.db, page.person, (Role.ADMIN,))


async def _area(page: Page, seen: set[int]) -> Area:
    area = (await page.db.execute(select(Area).where(
        Area.code == page.request.match_info["code"]))).scalar_one_or_none()
    if area is None or area.id not in seen:
        raise Refused("area")
    return area


@routes.get("/escalation")
async def overview(request: web.Request) -> web.Response:
    """Every area the person works in, in tree order, with where its policy comes from."""
    page = page_of(request)
    seen, _ = await _scopes(page)
    areas = {a.id: a for a in (await page.db.execute(select(Area))).scalars()}
    own = set((await page.db.execute(select(EscalationPolicy.area_id))).scalars())
    children: dict[int | None, list[Area]] = {}
    for area in sorted(areas.values(), key=lambda a: (a.name, a.code)):
        children.setdefault(area.parent_id, []).append(area)
    rows: list[Row] = []

    def walk(area: Area, depth: int, source: Area | None) -> None:
        source = area if area.id in own else source
        if area.id in seen:
            rows.append(Row(area, depth, source))
        for child in children.get(area.id, []):
            walk(child, depth + (area.id in seen), source)

    for root in children.get(None, []):
        walk(root, 0, None)
    return page.render("escalation.html", nav="escalation", rows=rows)


@routes.get("/escalation/{code}")
async def policy_page(request: web.Request) -> web.Response:
    """The policy in force for one area, and the form to change it (admins of the area)."""
    page = page_of(request)
    seen, editable = await _scopes(page)
    area = await _area(page, seen)
    policy, source = await escalation.effective(page.db, area.id)
    done = request.query.get("done")
    return _render(page, area, source, escalation.to_dict(policy), area.id in editable,
                   problem=None, done=done if done in DONE else None)


SHORT = re.compile(r"^(\d+)([smhdw])$")


def _spoken(page: Page) -> Any:
    """10m as people write it: «10 phút» in Vietnamese (the parser reads both)."""
    def say(value: object) -> object:
        found = SHORT.match(str(value))
        if not found:
            return value
        return page.t("console.escalation.duration", n=found[1],
                      unit=page.t(f"console.escalation.unit.{found[2]}"))
    return say


def _render(page: Page, area: Area, source: Area | None, values: dict[str, Any],
            editable: bool, *, problem: escalation.PolicyError | None,
            done: str | None = None) -> web.Response:
    return page.render(
        "escalation_area.html", spoken=_spoken(page), status=422 if problem else 200,
        nav="escalation", area=area,
        source=source, values=values, editable=editable, levels=escalation.LEVELS,
        severities=escalation.SEVERITIES, spans=SPANS, spare=SPARE_STEPS, done=done,
        problem=problem.text(page.t) if problem else None,
        problem_at=_field_name(problem) if problem else None)


def _field_name(problem: escalation.PolicyError) -> str | None:
    """The form field to mark: urgent.after.2, normal.repeat_every…"""
    where = problem.where
    if where is None or where.severity is None:
        return None
    if where.step is not None:
        return f"{where.severity}.{where.key or 'after'}.{where.step}"
    return f"{where.severity}.{where.key}" if where.key else None


def from_form(form: MultiMapping[Any]) -> dict[str, Any]:
    """The form's fields as the policy file's table; rows left empty are no step."""
    data: dict[str, Any] = {}
    for severity in escalation.SEVERITIES:
        steps = []
        rows = sorted({int(key.rsplit(".", 1)[1]) for key in form
                       if key.startswith(f"{severity}.after.")
                       and key.rsplit(".", 1)[1].isdigit()})
        for n in rows:
            after = str(form.get(f"{severity}.after.{n}", "")).strip()
            notify = [str(v) for v in form.getall(f"{severity}.notify.{n}", [])]
            if not after and not notify:
                continue
            step: dict[str, Any] = {"notify": notify}
            if after:
                step["after"] = after
            steps.append(step)
        section: dict[str, Any] = {"steps": steps}
        repeat = str(form.get(f"{severity}.repeat_last", "")).strip()
        section["repeat_last"] = int(repeat) if repeat.isdigit() else repeat
        for key in SPANS:
            section[key] = str(form.get(f"{severity}.{key}", "")).strip()
        data[severity] = section
    return data


@routes.post("/escalation/{code}")
async def save(request: web.Request) -> web.Response:
    """Check the form with the same rules as a policy file; save it or show what is wrong."""
    page = page_of(request)
    seen, editable = await _scopes(page)
    area = await _area(page, seen)
    if area.id not in editable:
        raise Refused("escalation")
    form = await request.post()
    if form.get("inherit"):
        await escalation.set_policy(page.db, area, None, page.now)
        await console.audit(page.db, page.person.id, "escalation_inherited", area.code,
                            page.now)
        return see_other(f"/console/escalation/{area.code}", done="inherited")
    values = from_form(form)
    try:
        policy = escalation.parse(values)
    except escalation.PolicyError as problem:
        _, source = await escalation.effective(page.db, area.id)
        return _render(page, area, source, values, True, problem=problem)
    await escalation.set_policy(page.db, area, policy, page.now)
    await console.audit(page.db, page.person.id, "escalation_set", area.code, page.now,
                        policy=escalation.to_dict(policy))
    return see_other(f"/console/escalation/{area.code}", done="saved")
