"""Reporting an incident: a short guided flow a stressed teacher can finish in under a minute."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.core.context import Context, Router, parse_number
from bot.core.messages import Attachment, Choice, Outbound
from bot.services import cases, escalation
from storage.models import (
    CATEGORIES,
    Incident,
    IncidentAttachment,
    IncidentStatus,
    Priority,
    Role,
    School,
)

_LOGGER = logging.getLogger(__name__)
FLOW = "report"
DESCRIPTION_MAX = 3000
PLACE_MAX = 300
CHILDREN_MAX = 200
ATTACHMENTS_MAX = 10
ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024  # what a Telegram bot can download
ATTACHMENT_KINDS = {"photo", "voice", "audio", "video", "video_note", "document"}
DOCUMENT_TYPES = ("image/", "video/", "audio/", "application/pdf")
DRAFT_TTL = timedelta(hours=24)
ORDER = ("category", "school", "description", "when", "where", "children", "anonymous")
_DATE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})(?:[/.\-](\d{2,4}))?\s*$")


def reporter_schools(ctx: Context) -> dict[int, str]:
    """Return the schools this person may report for, with the role they hold there."""
    schools: dict[int, str] = {}
    for r in ctx.roles:
        liaison_already = schools.get(r.school_id or 0) == Role.LIAISON
        if r.school_id and r.role in (Role.LIAISON, Role.PARENT) and not liaison_already:
            schools[r.school_id] = r.role
    return schools


def _data(ctx: Context) -> dict[str, Any]:
    return dict(ctx.conversation.data or {})


async def start(ctx: Context) -> None:
    """Begin a report (or offer to resume the unfinished one)."""
    if not reporter_schools(ctx):
        _LOGGER.info("Report refused: account %s has no liaison/parent role", ctx.account.id)
        ctx.reply("report.not_allowed")
        return
    data = _data(ctx)
    if ctx.conversation.flow == FLOW and data and not _expired(ctx, data):
        if ctx.conversation.step != "resume":
            ctx.update(resume_step=ctx.conversation.step)
        _offer_resume(ctx)
        return
    _begin(ctx)


def _offer_resume(ctx: Context) -> None:
    ctx.conversation.step = "resume"
    ctx.reply("report.resume", choices=[
        Choice("report:resume", ctx.t("report.resume.continue")),
        Choice("report:discard", ctx.t("report.resume.discard"))])


def _begin(ctx: Context) -> None:
    schools = reporter_schools(ctx)
    only_parent = all(role == Role.PARENT for role in schools.values())
    ctx.goto(FLOW, "danger", attachments=[], touched=ctx.clock.now().isoformat(),
             anonymous=True if only_parent else None)
    if len(schools) == 1:
        ctx.update(school_id=next(iter(schools)))
    _ask(ctx, "danger")


def _expired(ctx: Context, data: dict[str, Any]) -> bool:
    touched = data.get("touched")
    if not touched:
        return True
    return ctx.clock.now() - datetime.fromisoformat(touched) > DRAFT_TTL


def _yes_no(ctx: Context) -> list[Choice]:
    return [Choice("report:danger:yes", ctx.t("report.danger.yes")),
            Choice("report:danger:no", ctx.t("report.danger.no"))]


def _ask(ctx: Context, step: str) -> None:
    """Move to step and ask its question."""
    t = ctx.t
    ctx.conversation.step = step
    if step == "danger":
        ctx.reply("report.danger", choices=_yes_no(ctx))
    elif step == "category":
        ctx.reply("report.category", choices=[
            Choice(f"report:cat:{c}", t(f"category.{c}")) for c in CATEGORIES])
    elif step == "school":
        ctx.reply("report.school", choices=[
            Choice(f"report:school:{sid}", name) for sid, name in ctx.conversation.data.get(
                "school_names", [])])
    elif step == "description":
        ctx.reply("report.description", max=DESCRIPTION_MAX)
    elif step == "when":
        ctx.reply("report.when", choices=[
            Choice("report:when:now", t("report.when.now")),
            Choice("report:when:today", t("report.when.today")),
            Choice("report:when:earlier", t("report.when.earlier"))])
    elif step == "when_date":
        ctx.reply("report.when_date")
    elif step == "where":
        ctx.reply("report.where", choices=[Choice("report:skip", t("report.skip"))])
    elif step == "children":
        ctx.reply("report.children", choices=[Choice("report:skip", t("report.unknown"))])
    elif step == "anonymous":
        ctx.reply("report.anonymous", choices=[
            Choice("report:anon:no", t("report.anonymous.no")),
            Choice("report:anon:yes", t("report.anonymous.yes"))])
    elif step == "summary":
        ctx.reply_text(_summary(ctx), choices=[
            Choice("report:send", t("report.send")), Choice("report:edit", t("report.edit")),
            Choice("report:cancel", t("report.cancel"))])
    elif step == "edit":
        ctx.reply("report.edit.prompt", choices=[
            Choice(f"report:edit:{field}", t(f"report.field.{field}"))
            for field in ORDER if _applies(ctx, field)])


def _applies(ctx: Context, step: str) -> bool:
    if step == "school":
        return len(reporter_schools(ctx)) > 1
    if step == "anonymous":
        return any(role == Role.LIAISON for role in reporter_schools(ctx).values()) or \
            bool(ctx.conversation.data.get("editing"))
    return True


async def _next(ctx: Context, after: str) -> None:
    """Ask the next unanswered step, or show the summary when editing or done."""
    data = ctx.conversation.data
    if data.get("editing"):
        ctx.update(editing=False)
        await _to_summary(ctx)
        return
    index = ORDER.index(after) + 1 if after in ORDER else 0
    for step in ORDER[index:]:
        if not _applies(ctx, step):
            continue
        if step == "school" and data.get("school_id"):
            continue
        if step == "category" and data.get("category"):
            continue
        if step == "anonymous" and data.get("anonymous") is not None:
            continue
        await _prepare(ctx, step)
        _ask(ctx, step)
        return
    await _to_summary(ctx)


async def _to_summary(ctx: Context) -> None:
    await _prepare(ctx, "summary")
    _ask(ctx, "summary")


async def _prepare(ctx: Context, step: str) -> None:
    """Load what a step's question needs (school names) into the draft."""
    if step in ("school", "summary"):
        ids = list(reporter_schools(ctx))
        rows = (await ctx.session.execute(
            select(School.id, School.name).where(School.id.in_(ids)).order_by(School.name)
        )).all()
        ctx.update(school_names=[[sid, name] for sid, name in rows])


def _summary(ctx: Context) -> str:
    t, data = ctx.t, ctx.conversation.data
    names = dict(map(tuple, data.get("school_names", [])))
    lines = [t("report.summary.header")]
    if data.get("incident_ref"):
        lines.append(t("report.summary.urgent", ref=data["incident_ref"]))
    lines += [
        t("report.summary.category", value=t(f"category.{data.get('category') or 'other'}")),
        t("report.summary.school", value=names.get(data.get("school_id"), "—")),
        t("report.summary.description", value=data.get("description") or "—"),
        t("report.summary.when", value=_when_text(ctx)),
        t("report.summary.where", value=_place_text(ctx)),
        t("report.summary.children", value=data.get("children") or t("report.unknown")),
        t("report.summary.attachments", value=len(data.get("attachments", []))),
        t("report.summary.anonymous",
          value=t("report.anonymous.yes") if data.get("anonymous") else t("report.anonymous.no")),
    ]
    return "\n".join(lines)


def _when_text(ctx: Context) -> str:
    occurred = ctx.conversation.data.get("occurred")
    if occurred in ("now", "today"):
        return ctx.t(f"report.when.{occurred}")
    return occurred or "—"


def _place_text(ctx: Context) -> str:
    data = ctx.conversation.data
    if data.get("lat") is not None:
        return ctx.t("report.where.location")
    return data.get("place") or "—"


async def flow(ctx: Context) -> None:
    """Handle one answer in the report flow."""
    inbound = ctx.inbound
    step = ctx.conversation.step or "danger"
    ctx.update(touched=ctx.clock.now().isoformat())
    if inbound.unsupported == "edited":
        ctx.reply("error.edited")
        _ask(ctx, step)
        return
    if inbound.attachments:
        await _attachments(ctx, step)
        return
    choice = ctx.choice or ""
    parts = choice.split(":")
    if choice == "report:cancel":
        await _cancel(ctx)
        return
    if step == "resume":
        if choice == "report:resume":
            data = ctx.conversation.data
            await _prepare(ctx, "summary")
            _ask(ctx, data.get("resume_step") or "danger")
        elif choice == "report:discard":
            await _cancel(ctx)
        else:
            _offer_resume(ctx)
        return
    handler = _STEPS.get(step)
    if handler is None:
        ctx.clear()
        return
    done = await handler(ctx, parts, (inbound.text or "").strip())
    if not done:
        if inbound.unsupported:
            ctx.reply("error.unsupported_in_flow")
        _ask(ctx, ctx.conversation.step or step)


async def _danger(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "danger"]:
        return False
    urgent = parts[2] == "yes"
    ctx.update(urgent=urgent)
    if urgent:
        ctx.reply("report.urgent.call")
        if ctx.conversation.data.get("school_id"):
            await _create_urgent(ctx)
            await _next(ctx, "")
        else:
            await _prepare(ctx, "school")
            _ask(ctx, "school")
        return True
    await _next(ctx, "")
    return True


async def _category(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "cat"] or parts[2] not in CATEGORIES:
        return False
    ctx.update(category=parts[2])
    await _next(ctx, "category")
    return True


async def _school(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "school"] or len(parts) < 3 or parse_number(parts[2]) is None:
        return False
    school_id = int(parts[2])
    if school_id not in reporter_schools(ctx):
        return False
    ctx.update(school_id=school_id)
    data = ctx.conversation.data
    if data.get("urgent") and not data.get("incident_id"):
        await _create_urgent(ctx)
        await _next(ctx, "")
        return True
    await _next(ctx, "school")
    return True


async def _description(ctx: Context, parts: list[str], text: str) -> bool:
    if not text:
        return False
    if len(text) > DESCRIPTION_MAX:
        ctx.reply("report.too_long", max=DESCRIPTION_MAX, length=len(text))
        return True
    ctx.update(description=text)
    await _next(ctx, "description")
    return True


async def _when(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "when"]:
        return False
    if parts[2] == "earlier":
        _ask(ctx, "when_date")
        return True
    ctx.update(occurred=parts[2])
    await _next(ctx, "when")
    return True


async def _when_date(ctx: Context, parts: list[str], text: str) -> bool:
    today = ctx.clock.now().astimezone(ctx.settings.tz).date()
    match = _DATE.match(text)
    try:
        if not match:
            raise ValueError
        day, month, year = int(match[1]), int(match[2]), match[3]
        year_n = today.year if year is None else int(year) + (2000 if len(year) == 2 else 0)
        when = datetime(year_n, month, day).date()
        if when > today:
            raise ValueError
    except ValueError:
        ctx.reply("report.when_date.invalid")
        return True
    ctx.update(occurred=when.strftime("%d/%m/%Y"))
    await _next(ctx, "when")
    return True


async def _where(ctx: Context, parts: list[str], text: str) -> bool:
    location = ctx.inbound.location
    if location is not None:
        ctx.update(lat=location[0], lon=location[1], place=None)
    elif parts == ["report", "skip"]:
        ctx.update(place=None, lat=None, lon=None)
    elif text:
        ctx.update(place=text[:PLACE_MAX], lat=None, lon=None)
    else:
        return False
    await _next(ctx, "where")
    return True


async def _children(ctx: Context, parts: list[str], text: str) -> bool:
    if parts == ["report", "skip"]:
        ctx.update(children=None)
    elif text:
        ctx.update(children=text[:CHILDREN_MAX])
    else:
        return False
    await _next(ctx, "children")
    return True


async def _anonymous(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "anon"]:
        return False
    ctx.update(anonymous=parts[2] == "yes")
    await _next(ctx, "anonymous")
    return True


async def _summary_step(ctx: Context, parts: list[str], text: str) -> bool:
    if parts == ["report", "send"]:
        await _send(ctx)
        return True
    if parts == ["report", "edit"]:
        _ask(ctx, "edit")
        return True
    return False


async def _edit(ctx: Context, parts: list[str], text: str) -> bool:
    if parts[:2] != ["report", "edit"] or len(parts) < 3 or parts[2] not in ORDER:
        return False
    ctx.update(editing=True)
    await _prepare(ctx, parts[2])
    _ask(ctx, parts[2])
    return True


_STEPS = {
    "danger": _danger, "category": _category, "school": _school,
    "description": _description, "when": _when, "when_date": _when_date, "where": _where,
    "children": _children, "anonymous": _anonymous, "summary": _summary_step, "edit": _edit,
}


async def _attachments(ctx: Context, step: str) -> None:
    """Keep photos, voice notes, videos and documents with the draft (or the urgent case)."""
    data = ctx.conversation.data
    kept = list(data.get("attachments", []))
    for item in ctx.inbound.attachments:
        problem = attachment_problem(item)
        if problem:
            ctx.reply(problem, max_mb=ATTACHMENT_MAX_BYTES // (1024 * 1024))
            continue
        if len(kept) >= ATTACHMENTS_MAX:
            ctx.reply("attachment.too_many", max=ATTACHMENTS_MAX)
            break
        kept.append([item.kind, item.ref, item.mime_type, item.size, item.name])
        ctx.reply("attachment.saved", count=len(kept))
    ctx.update(attachments=kept)
    caption = (ctx.inbound.text or "").strip()
    if step == "description" and caption:
        await _description(ctx, [], caption)
        return
    _ask(ctx, step)


def attachment_problem(item: Attachment) -> str | None:
    """Return the catalogue key explaining why an attachment is refused, or None."""
    if item.kind not in ATTACHMENT_KINDS:
        return "attachment.bad_type"
    if item.kind == "document" and not (item.mime_type or "").startswith(DOCUMENT_TYPES):
        return "attachment.bad_type"
    if item.size is not None and item.size > ATTACHMENT_MAX_BYTES:
        return "attachment.too_big"
    return None


async def _cancel(ctx: Context) -> None:
    urgent_ref = ctx.conversation.data.get("incident_ref")
    ctx.clear()
    if urgent_ref:
        ctx.reply("report.cancelled_urgent", ref=urgent_ref)
    else:
        ctx.reply("report.cancelled")


async def _recent_reports(ctx: Context) -> int:
    since = ctx.clock.now() - timedelta(hours=1)
    return (await ctx.session.execute(select(func.count()).select_from(Incident).where(
        Incident.reporter_person_id == ctx.person.id,  # type: ignore[union-attr]
        Incident.created_at >= since))).scalar_one()


async def _create(ctx: Context, urgent: bool) -> Incident:
    """Commit-ready incident from the draft: stored, routed, alerted, all in this transaction."""
    data = ctx.conversation.data
    now = ctx.clock.now()
    person = ctx.person
    assert person is not None
    school = await ctx.session.get(School, data["school_id"])
    assert school is not None
    role = reporter_schools(ctx)[school.id]
    incident = Incident(
        ref=await cases.new_ref(ctx.session, school.area, now), school_id=school.id,
        area_id=school.area_id, reporter_person_id=person.id, reporter_account_id=ctx.account.id,
        reporter_role=role, anonymous=bool(data.get("anonymous", role == Role.PARENT)),
        urgent=urgent, category=data.get("category") or "other", status=IncidentStatus.NEW,
        created_at=now, updated_at=now)
    _fill(incident, data)
    ctx.session.add(incident)
    await ctx.session.flush()
    await _store_attachments(ctx, incident)
    await ctx.session.refresh(incident, ["school", "area"])
    await cases.record(ctx.session, incident, "created", now,
                       actor=None if incident.anonymous else person, role=role, urgent=urgent,
                       category=incident.category)
    await _route_and_alert(ctx, incident)
    return incident


def _fill(incident: Incident, data: dict[str, Any]) -> None:
    incident.category = data.get("category") or incident.category or "other"
    incident.description = data.get("description") or incident.description
    incident.occurred = data.get("occurred") or incident.occurred
    incident.place = data.get("place")
    incident.latitude = data.get("lat")
    incident.longitude = data.get("lon")
    incident.children = data.get("children")
    if data.get("anonymous") is not None:
        incident.anonymous = bool(data["anonymous"])


async def _store_attachments(ctx: Context, incident: Incident) -> None:
    data = ctx.conversation.data
    stored = int(data.get("attachments_stored", 0))
    items = data.get("attachments", [])
    for kind, ref, mime, size, name in items[stored:]:
        ctx.session.add(IncidentAttachment(
            incident_id=incident.id, channel=ctx.account.channel, kind=kind, ref=ref,
            mime_type=mime, size=size, name=name, source="reporter", created_at=ctx.clock.now()))
    ctx.update(attachments_stored=len(items))


async def _route_and_alert(ctx: Context, incident: Incident) -> None:
    now = ctx.clock.now()
    policy, _ = await escalation.effective(ctx.session, incident.area_id)
    severity = policy.for_case(incident.urgent)
    incident.resolution_due_at = incident.created_at + severity.resolution_target
    first = severity.steps[0]
    recipients = await cases.route(ctx.session, incident, first.notify, now)
    if recipients:
        incident.assigned_person_id = recipients[0].person_id
    await cases.record(ctx.session, incident, "routed", now,
                       to=[r.person_id for r in recipients])
    await cases.alert(ctx.session, incident, recipients, now=now, tz=ctx.settings.tz,
                      default_language=ctx.settings.default_language)
    await cases.start_escalation(ctx.session, incident, now)


async def _create_urgent(ctx: Context) -> None:
    incident = await _create(ctx, urgent=True)
    ctx.update(incident_id=incident.id, incident_ref=incident.ref)
    ctx.reply("report.urgent.sent", ref=incident.ref)


async def _send(ctx: Context) -> None:
    data = ctx.conversation.data
    now = ctx.clock.now()
    if data.get("incident_id"):
        incident = await ctx.session.get(Incident, data["incident_id"])
        assert incident is not None
        _fill(incident, data)
        incident.updated_at = now
        await _store_attachments(ctx, incident)
        await cases.record(ctx.session, incident, "details_added", now, role="reporter")
        if incident.status != IncidentStatus.NEW:
            await cases.progress_made(ctx.session, incident, now)
        if incident.assigned_person_id:
            await cases.notify(
                ctx.session, incident.assigned_person_id,
                lambda t: Outbound(t("alert.updated", ref=incident.ref) + "\n\n"
                                   + cases.alert_text(t, incident, ctx.settings.tz),
                                   cases.officer_actions(t, incident)),
                key=f"updated:{incident.id}:{ctx.inbound.channel}:{ctx.inbound.event_id}",
                now=now, default_language=ctx.settings.default_language,
                priority=Priority.ALERT)
        ctx.clear()
        ctx.reply("report.details_added", ref=incident.ref)
        return
    if await _recent_reports(ctx) >= ctx.settings.report_limit_per_hour:
        _LOGGER.info("Report slowed down: account %s reached the hourly limit", ctx.account.id)
        ctx.reply("report.slow_down")
        _ask(ctx, "summary")
        return
    incident = await _create(ctx, urgent=False)
    ctx.clear()
    ctx.reply("report.received", ref=incident.ref)


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("report")(start)
    router.flow(FLOW)(flow)
