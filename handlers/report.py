"""Reporting an incident: a short guided flow a stressed teacher can finish in under a minute."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router, parse_number
from bot.core.messages import Choice
from bot.services.cases import (
    ATTACHMENT_MAX_BYTES,
    ATTACHMENTS_MAX,
    DAY,
    Draft,
    attachment_problem,
    occurred_text,
    occurred_value,
)
from bot.services.directory import PhoneError, normalise_phone
from handlers.menus import main_menu
from handlers.services import actor, case_service
from storage.models import (
    CATEGORIES,
    Incident,
    Role,
    School,
)

_LOGGER = logging.getLogger(__name__)
FLOW = "report"
DESCRIPTION_MAX = 3000
PLACE_MAX = 300
CHILDREN_MAX = 200
NAME_MAX = 120
# A Vietnamese phone number as people type it: 0912 345 678, 0912.345.678, +84 912 345 678.
PHONE_IN_TEXT = re.compile(r"(?:\+\s?84|0)(?:[\s.\-]?\d){8,10}")
DRAFT_TTL = timedelta(hours=24)
# Steps whose own answer may be a number: a typed number there is the answer, not an option.
TYPED_NUMBERS_ARE_TEXT = ("children",)
REPORTING_ROLES = (Role.LIAISON, Role.PARENT, Role.PUBLIC)
ORDER = ("category", "school", "description", "when", "where", "children", "anonymous")
_DATE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})(?:[/.\-](\d{2,4}))?\s*$")



@choice_data(FLOW)
@dataclass(frozen=True)
class ReportChoice(ChoiceData):
    """An answer in the report flow: a step and what was picked, e.g. ("cat", "physical"),
    or an action alone: "send", "edit", "skip", "cancel", "resume", "discard"."""

    action: str
    value: str | None = None


def _answer(chosen: ReportChoice | None, action: str) -> str | None:
    """What was picked for this step, if the choice answers it."""
    return chosen.value if chosen is not None and chosen.action == action else None


def reporter_schools(ctx: Context) -> dict[int, str]:
    """Return the schools this person may report for, with the role they hold there."""
    schools: dict[int, str] = {}
    for r in ctx.roles:
        liaison_already = schools.get(r.school_id or 0) == Role.LIAISON
        if r.school_id and r.role in REPORTING_ROLES and not liaison_already:
            schools[r.school_id] = r.role
    return schools


def _data(ctx: Context) -> dict[str, Any]:
    return dict(ctx.conversation.data or {})


async def start(ctx: Context, school_id: int | None = None) -> None:
    """Begin a report (or offer to resume the unfinished one); school_id: for that school
    (a school's public page)."""
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
    _begin(ctx, school_id)


def _offer_resume(ctx: Context) -> None:
    ctx.conversation.step = "resume"
    ctx.reply("report.resume", choices=[
        ReportChoice("resume").choice(ctx.t("report.resume.continue")),
        ReportChoice("discard").choice(ctx.t("report.resume.discard"))])


def _begin(ctx: Context, school_id: int | None = None) -> None:
    schools = reporter_schools(ctx)
    ctx.goto(FLOW, "danger", attachments=[], touched=ctx.clock.now().isoformat())
    if school_id in schools:
        ctx.update(school_id=school_id)
    elif len(schools) == 1:
        ctx.update(school_id=next(iter(schools)))
    if _in_public(ctx):
        ctx.update(anonymous=True)  # a public page's report is always anonymous
    _ask(ctx, "danger")


def _expired(ctx: Context, data: dict[str, Any]) -> bool:
    touched = data.get("touched")
    if not touched:
        return True
    return ctx.clock.now() - datetime.fromisoformat(touched) > DRAFT_TTL


def _yes_no(ctx: Context) -> list[Choice]:
    return [ReportChoice("danger", "yes").choice(ctx.t("report.danger.yes")),
            ReportChoice("danger", "no").choice(ctx.t("report.danger.no"))]


def _ask(ctx: Context, step: str) -> None:
    """Move to step and ask its question."""
    t = ctx.t
    ctx.conversation.step = step
    if step == "danger":
        ctx.reply("report.danger", choices=_yes_no(ctx))
    elif step == "category":
        ctx.reply("report.category", choices=[
            ReportChoice("cat", c).choice(t(f"category.{c}")) for c in CATEGORIES])
    elif step == "school":
        ctx.reply("report.school", choices=[
            ReportChoice("school", str(sid)).choice(name)
            for sid, name in ctx.conversation.data.get("school_names", [])])
    elif step == "description":
        ctx.reply("report.description", max=DESCRIPTION_MAX)
    elif step == "when":
        ctx.reply("report.when", choices=[
            ReportChoice("when", "now").choice(t("report.when.now")),
            ReportChoice("when", "today").choice(t("report.when.today")),
            ReportChoice("when", "earlier").choice(t("report.when.earlier"))])
    elif step == "when_date":
        ctx.reply("report.when_date")
    elif step == "where":
        ctx.reply("report.where", choices=[ReportChoice("skip").choice(t("report.skip"))])
    elif step == "children":
        ctx.reply("report.children", choices=[ReportChoice("skip").choice(t("report.unknown"))])
    elif step == "anonymous" and _as_parent(ctx):
        # A parent is anonymous unless they choose otherwise: that option comes first.
        ctx.reply("report.anonymous_parent", choices=[
            ReportChoice("anon", "yes").choice(t("report.anonymous_parent.yes")),
            ReportChoice("anon", "no").choice(t("report.anonymous_parent.no"))])
    elif step == "anonymous":
        ctx.reply("report.anonymous", choices=[
            ReportChoice("anon", "no").choice(t("report.anonymous.no")),
            ReportChoice("anon", "yes").choice(t("report.anonymous.yes"))])
    elif step == "contact":
        ctx.reply("report.contact", choices=[
            ReportChoice("anon", "yes").choice(t("report.anonymous_parent.yes"))])
    elif step == "summary":
        ctx.reply_text(_summary(ctx), choices=[
            ReportChoice(action).choice(t(f"report.{action}"))
            for action in ("send", "edit", "cancel")])
    elif step == "edit":
        ctx.reply("report.edit.prompt", choices=[
            ReportChoice("edit", field).choice(t(f"report.field.{field}"))
            for field in ORDER if _applies(ctx, field)])


def _applies(ctx: Context, step: str) -> bool:
    if _in_public(ctx):  # the page chose the school, and anonymity is not a choice there
        return step not in ("school", "anonymous")
    if step == "school":
        return len(reporter_schools(ctx)) > 1
    return True


def _in_public(ctx: Context) -> bool:
    """Whether this report comes from a school's public page."""
    return ctx.public_visitor and \
        reporter_schools(ctx).get(ctx.conversation.data.get("school_id")) == Role.PUBLIC


def _as_parent(ctx: Context) -> bool:
    """Whether this report is a parent's: at the school chosen, or at every school."""
    schools = reporter_schools(ctx)
    chosen = ctx.conversation.data.get("school_id")
    if chosen in schools:
        return schools[chosen] == Role.PARENT
    return all(role == Role.PARENT for role in schools.values())


def _contact_needed(ctx: Context) -> bool:
    """A named report the police could not answer: the directory has no name or phone for
    this person (parents join with a school's code and leave neither)."""
    person = ctx.person
    return person is None or not (person.name and person.phone)


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
        t("report.summary.anonymous", value=_identity_text(ctx)),
    ]
    return "\n".join(lines)


def _identity_text(ctx: Context) -> str:
    t, data = ctx.t, ctx.conversation.data
    if _in_public(ctx):
        return t("report.anonymous.yes")
    if data.get("anonymous") is False or (data.get("anonymous") is None and not _as_parent(ctx)):
        if data.get("contact_phone"):
            return t("report.summary.named_contact", name=data.get("contact_name"),
                     phone=data["contact_phone"])
        return t("report.anonymous.no")
    return t("report.anonymous.yes")


def _when_text(ctx: Context) -> str:
    now = ctx.clock.now()
    return occurred_text(ctx.t, ctx.conversation.data.get("occurred"), now, now,
                         ctx.settings.tz)


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
    if inbound.edited:  # which earlier answer it changes is anyone's guess: ask again
        ctx.reply("error.edited")
        _ask(ctx, step)
        return
    if inbound.attachments:
        await _attachments(ctx, step)
        return
    chosen = ctx.chosen(ReportChoice)
    if chosen is not None and inbound.choice is None and step in TYPED_NUMBERS_ARE_TEXT \
            and parse_number(inbound.text or "") is not None:
        chosen = None  # "1" at "how many children?" is one child, not the first option
    if chosen == ReportChoice("cancel"):
        await cancel(ctx)
        return
    if step == "resume":
        if chosen == ReportChoice("resume"):
            data = ctx.conversation.data
            await _prepare(ctx, "summary")
            _ask(ctx, data.get("resume_step") or "danger")
        elif chosen == ReportChoice("discard"):
            await cancel(ctx)
        else:
            _offer_resume(ctx)
        return
    handler = _STEPS.get(step)
    if handler is None:
        ctx.clear()
        return
    done = await handler(ctx, chosen, (inbound.text or "").strip())
    if not done:
        if inbound.unsupported and inbound.unsupported != "withheld":  # (already said)
            ctx.reply("error.unsupported_in_flow")
        _ask(ctx, ctx.conversation.step or step)


async def _danger(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    if _answer(chosen, "danger") not in ("yes", "no"):
        return False
    urgent = _answer(chosen, "danger") == "yes"
    ctx.update(urgent=urgent)
    if urgent:
        ctx.reply("report.urgent.call")
        if ctx.conversation.data.get("school_id"):
            await _create_urgent(ctx)
            await _next(ctx, "")
        else:
            # Several schools: the alert goes to all their officers now, and the school is
            # asked in the same breath; a question must never hold an alert back.
            await _prepare(ctx, "school")
            await _create_urgent(ctx, unsure=True)
            _ask(ctx, "school")
        return True
    await _next(ctx, "")
    return True


async def _category(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    category = _answer(chosen, "cat")
    if category not in CATEGORIES:
        return False
    ctx.update(category=category)
    await _next(ctx, "category")
    return True


async def _school(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    school_id = parse_number(_answer(chosen, "school") or "")
    if school_id is None or school_id not in reporter_schools(ctx):
        return False
    data = ctx.conversation.data
    changed = school_id != data.get("school_id")
    ctx.update(school_id=school_id)
    if data.get("incident_id") and (data.get("unsure") or changed):
        school = await ctx.session.get(School, school_id)
        assert school is not None
        await case_service(ctx).place(actor(ctx), data["incident_id"], school,
                                      reporter_schools(ctx)[school_id])
        ctx.update(unsure=False)
        ctx.reply("report.urgent.placed", school=school.name)
        await _next(ctx, "")  # asked before the kind, on the urgent path: the kind is next
        return True
    await _next(ctx, "school")
    return True


async def _description(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    if not text:
        return False
    if len(text) > DESCRIPTION_MAX:
        ctx.reply("report.too_long", max=DESCRIPTION_MAX, length=len(text))
        return True
    ctx.update(description=text)
    await _next(ctx, "description")
    return True


async def _when(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    when = _answer(chosen, "when")
    if when not in ("now", "today", "earlier"):
        return False
    if when == "earlier":
        _ask(ctx, "when_date")
        return True
    ctx.update(occurred=occurred_value(when, ctx.clock.now(), ctx.settings.tz))
    await _next(ctx, "when")
    return True


async def _when_date(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
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
    ctx.update(occurred=when.strftime(DAY))
    await _next(ctx, "when")
    return True


async def _where(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    location = ctx.inbound.location
    if location is not None:
        ctx.update(lat=location[0], lon=location[1], place=None)
    elif chosen == ReportChoice("skip"):
        ctx.update(place=None, lat=None, lon=None)
    elif text:
        ctx.update(place=text[:PLACE_MAX], lat=None, lon=None)
    else:
        return False
    await _next(ctx, "where")
    return True


async def _children(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    if chosen == ReportChoice("skip"):
        ctx.update(children=None)
    elif text:
        ctx.update(children=text[:CHILDREN_MAX])
    else:
        return False
    await _next(ctx, "children")
    return True


async def _anonymous(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    anonymous = _answer(chosen, "anon")
    if anonymous not in ("yes", "no"):
        return False
    ctx.update(anonymous=anonymous == "yes")
    if anonymous == "yes":
        ctx.update(contact_name=None, contact_phone=None)
    elif _contact_needed(ctx):
        ctx.conversation.step = "contact"
        _ask(ctx, "contact")
        return True
    await _next(ctx, "anonymous")
    return True


def read_contact(text: str) -> tuple[str, str] | None:
    """A name and a phone typed in one message, in either order («Nguyễn Thị Hoa,
    0912 345 678»); None unless both are there."""
    found = PHONE_IN_TEXT.search(text)
    if found is None:
        return None
    try:
        phone = normalise_phone(found.group(0))
    except PhoneError:
        return None
    name = " ".join((text[:found.start()] + " " + text[found.end():]).replace(",", " ")
                    .replace(";", " ").replace("-", " ").split()).strip(" .:")
    if len(name) < 2 or any(ch.isdigit() for ch in name):
        return None
    return name[:NAME_MAX], phone


async def _contact(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    if _answer(chosen, "anon") == "yes":  # changed their mind: anonymous after all
        return await _anonymous(ctx, chosen, text)
    contact = read_contact(text) if text else None
    if contact is None:  # say what is missing, with the way out; the step stays
        ctx.reply("report.contact.invalid", choices=[
            ReportChoice("anon", "yes").choice(ctx.t("report.anonymous_parent.yes"))])
        return True
    ctx.update(contact_name=contact[0], contact_phone=contact[1])
    await _next(ctx, "anonymous")
    return True


async def _summary_step(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    if chosen == ReportChoice("send"):
        await _send(ctx)
        return True
    if chosen == ReportChoice("edit"):
        _ask(ctx, "edit")
        return True
    return False


async def _edit(ctx: Context, chosen: ReportChoice | None, text: str) -> bool:
    field = _answer(chosen, "edit")
    if field not in ORDER:
        return False
    ctx.update(editing=True)
    await _prepare(ctx, field)
    _ask(ctx, field)
    return True


_STEPS = {
    "danger": _danger, "category": _category, "school": _school,
    "description": _description, "when": _when, "when_date": _when_date, "where": _where,
    "children": _children, "anonymous": _anonymous, "contact": _contact,
    "summary": _summary_step, "edit": _edit,
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
        await _description(ctx, None, caption)
        return
    _ask(ctx, step)


async def cancel(ctx: Context) -> None:
    """Stop the report (its Cancel button, or /cancel). Once an urgent report has gone out,
    stopping only stops the details: say that the case still stands with the police, or a
    teacher reads «Đã hủy» as "the alert was withdrawn"."""
    urgent_ref = ctx.conversation.data.get("incident_ref")
    ctx.clear()
    choices = main_menu(ctx) if ctx.roles else None
    if urgent_ref:
        ctx.reply("report.cancelled_urgent", ref=urgent_ref, choices=choices)
    else:
        ctx.reply("report.cancelled", choices=choices)


def _draft(ctx: Context) -> Draft:
    """What the reporter filled in, for the case service."""
    data = ctx.conversation.data
    return Draft(category=data.get("category"), description=data.get("description"),
                 occurred=data.get("occurred"), place=data.get("place"),
                 latitude=data.get("lat"), longitude=data.get("lon"),
                 children=data.get("children"), anonymous=data.get("anonymous"),
                 contact_name=data.get("contact_name"), contact_phone=data.get("contact_phone"))


def _unstored_attachments(ctx: Context) -> list[list[Any]]:
    """Attachments kept with the draft since the case last stored them (and mark them)."""
    data = ctx.conversation.data
    items = data.get("attachments", [])
    stored = int(data.get("attachments_stored", 0))
    ctx.update(attachments_stored=len(items))
    return items[stored:]


async def _create(ctx: Context, urgent: bool, *, unsure: bool = False) -> Incident:
    """Store, route and alert through the case service, in this message's transaction.
    unsure: the reporter has not said which of their schools yet (the first is used and
    every school's officers are alerted)."""
    others: tuple[School, ...] = ()
    if unsure:
        ids = [sid for sid, _ in ctx.conversation.data["school_names"]]
        schools = [await ctx.session.get(School, sid) for sid in ids]
        school, others = schools[0], tuple(s for s in schools[1:] if s is not None)
    else:
        school = await ctx.session.get(School, ctx.conversation.data["school_id"])
    assert school is not None
    draft = _draft(ctx)
    draft.attachments = _unstored_attachments(ctx)
    role = reporter_schools(ctx)[school.id]
    return await case_service(ctx).create(actor(ctx), school, role, draft, urgent=urgent,
                                          unsure_of=others)


async def _create_urgent(ctx: Context, *, unsure: bool = False) -> None:
    incident = await _create(ctx, urgent=True, unsure=unsure)
    ctx.update(incident_id=incident.id, incident_ref=incident.ref, unsure=unsure)
    ctx.reply("report.urgent.sent_which_school" if unsure else "report.urgent.sent",
              ref=incident.ref)
    await _followup_code(ctx, incident)


async def _followup_code(ctx: Context, incident: Incident) -> None:
    """A public page's reporter is nobody the system knows: the reference and a secret code
    are their only way back (shown once, here)."""
    if _in_public(ctx):
        code = await case_service(ctx).issue_followup(actor(ctx), incident.id)
        ctx.reply("report.public.code", ref=incident.ref, code=code,
                  link=f"{ctx.settings.console_base}/chat/f")


async def _send(ctx: Context) -> None:
    data = ctx.conversation.data
    if data.get("incident_id"):
        incident = await case_service(ctx).add_details(
            actor(ctx), data["incident_id"], _draft(ctx), _unstored_attachments(ctx),
            key=f"{ctx.inbound.channel}:{ctx.inbound.event_id}")
        ctx.clear()
        ctx.reply("report.details_added", ref=incident.ref)
        return
    since = ctx.clock.now() - timedelta(hours=1)
    if await case_service(ctx).reports_since(actor(ctx), since) >= \
            ctx.settings.report_limit_per_hour:
        _LOGGER.info("Report slowed down: account %s reached the hourly limit", ctx.account.id)
        ctx.reply("report.slow_down")
        _ask(ctx, "summary")
        return
    incident = await _create(ctx, urgent=False)
    ctx.reply("report.received", ref=incident.ref)
    await _followup_code(ctx, incident)
    ctx.clear()


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("report")(start)
    router.flow(FLOW)(flow)
