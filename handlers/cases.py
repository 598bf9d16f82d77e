"""Working a case: officers acknowledge, ask, note, reassign, close; reporters follow and answer."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import or_, select

from bot.core.context import Context, Router, parse_number
from bot.core.i18n import Translator
from bot.core.messages import Choice, Media, Outbound
from bot.services import cases
from handlers.report import attachment_problem
from storage.areas import ancestors
from storage.models import (
    OUTCOMES,
    Incident,
    IncidentAttachment,
    IncidentEvent,
    IncidentStatus,
    Person,
    Priority,
    Role,
    RoleAssignment,
)

_LOGGER = logging.getLogger(__name__)
TEXT_FLOW = "casetext"  # an officer typing a question, a note, a duplicate ref or a reason
RELAY_FLOW = "relay"  # a reporter typing an answer to the officer
TEXT_MAX = 2000
LIST_MAX = 20
TIMELINE_SHOWN = 12


def _refuse(ctx: Context, incident_id: object) -> None:
    _LOGGER.warning("Access refused: person %s on case %s",
                    ctx.person.id if ctx.person else None, incident_id)
    ctx.reply("case.not_allowed")


async def _incident(ctx: Context, incident_id: int) -> Incident | None:
    return await ctx.session.get(Incident, incident_id)


async def _for_officer(ctx: Context, incident_id: int) -> Incident | None:
    """Load a case the person may handle, or refuse politely (and log) and return None."""
    incident = await _incident(ctx, incident_id)
    if incident is None or not await cases.can_handle(ctx.session, ctx.person, incident):
        _refuse(ctx, incident_id)
        return None
    return incident


def _actor_name(ctx: Context) -> str:
    return (ctx.person.name if ctx.person else None) or ctx.t("case.someone")


async def _tell_reporter(ctx: Context, incident: Incident, event: str,
                         compose: Callable[[Translator], Outbound]) -> None:
    """Relay a message to whoever reported the case, on the account they reported from."""
    if incident.reporter_person_id is None:
        return
    await cases.notify(ctx.session, incident.reporter_person_id, compose,
                       key=f"reporter:{incident.id}:{event}", now=ctx.clock.now(),
                       default_language=ctx.settings.default_language,
                       priority=Priority.NOTICE, account_id=incident.reporter_account_id)


# ---- officer actions --------------------------------------------------------------------------

async def case_choice(ctx: Context) -> None:
    """Route a case:<action>:<id>[:<arg>] choice after checking who may do it."""
    parts = (ctx.choice or "").split(":")
    if len(parts) < 3 or parse_number(parts[2]) is None:
        ctx.reply("error.stale_choice")
        return
    action, incident_id, arg = parts[1], int(parts[2]), parts[3] if len(parts) > 3 else None
    if action == "reply":
        await _start_reply(ctx, incident_id)
        return
    incident = await _for_officer(ctx, incident_id)
    if incident is None:
        return
    handler = _ACTIONS.get(action)
    if handler is None:
        ctx.reply("error.stale_choice")
        return
    await handler(ctx, incident, arg)


async def _ack(ctx: Context, incident: Incident, _arg: str | None) -> None:
    now = ctx.clock.now()
    if incident.status != IncidentStatus.NEW:
        ctx.reply("case.already_acknowledged", ref=incident.ref)
        return
    incident.status = IncidentStatus.ACKNOWLEDGED
    incident.acknowledged_at = now
    incident.assigned_person_id = ctx.person.id  # type: ignore[union-attr]
    incident.updated_at = now
    await cases.record(ctx.session, incident, "acknowledged", now, actor=ctx.person,
                       role=Role.OFFICER)
    await cases.progress_made(ctx.session, incident, now)
    await _tell_reporter(ctx, incident, "acknowledged", lambda t: Outbound(
        t("reporter.acknowledged", ref=incident.ref)))
    await _tell_other_alerted(ctx, incident)
    ctx.reply("case.acknowledged", choices=cases.officer_actions(ctx.t, incident),
              ref=incident.ref)


async def _tell_other_alerted(ctx: Context, incident: Incident) -> None:
    """Let the other officers alerted about this case know someone has taken it."""
    rows = (await ctx.session.execute(select(IncidentEvent.data).where(
        IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "alerted"))).scalars()
    others = {d.get("person") for d in rows} - {ctx.person.id}  # type: ignore[union-attr]
    name = _actor_name(ctx)
    for person_id in sorted(p for p in others if p):
        await cases.notify(ctx.session, person_id,
                           lambda t: Outbound(t("case.taken_by", ref=incident.ref, name=name)),
                           key=f"taken:{incident.id}:{person_id}", now=ctx.clock.now(),
                           default_language=ctx.settings.default_language)


async def _view(ctx: Context, incident: Incident, _arg: str | None) -> None:
    now = ctx.clock.now()
    await cases.record(ctx.session, incident, "viewed", now, actor=ctx.person, role=Role.OFFICER)
    ctx.reply_text(await _details(ctx, incident), choices=cases.officer_actions(ctx.t, incident))
    for n, item in enumerate(incident.attachments, start=1):
        caption = ctx.t("case.attachment_caption", ref=incident.ref, n=n,
                        source=ctx.t(f"case.source.{item.source}"))
        ctx.replies.append(Outbound(caption, media=Media(item.kind, item.ref, item.channel,
                                                         item.stored_path)))


async def _details(ctx: Context, incident: Incident) -> str:
    t = ctx.t
    tz = ctx.settings.tz
    reporter = t("case.reporter.anonymous")
    if not incident.anonymous and incident.reporter_person_id:
        person = await ctx.session.get(Person, incident.reporter_person_id)
        if person is not None:
            reporter = t("case.reporter.named", name=person.name or "—",
                         role=t(f"role.{incident.reporter_role}"),
                         phone=person.phone or "—")
    place = incident.place or "—"
    if incident.latitude is not None:
        place = f"https://maps.google.com/?q={incident.latitude},{incident.longitude}"
    assigned = incident.assigned.name if incident.assigned else "—"
    lines = [
        t("case.details.header", ref=incident.ref,
          urgent=t("case.urgent_mark") if incident.urgent else ""),
        t("case.details.status", value=t(f"status.{incident.status}")),
        t("case.details.category", value=t(f"category.{incident.category}")),
        t("case.details.school", value=f"{incident.school.name} — {incident.area.name}"),
        t("case.details.reported", value=cases.local(t, incident.created_at, tz)),
        t("case.details.when", value=_occurred(t, incident.occurred)),
        t("case.details.where", value=place),
        t("case.details.children", value=incident.children or "—"),
        t("case.details.reporter", value=reporter),
        t("case.details.assigned", value=assigned),
        t("case.details.description", value=incident.description or "—"),
    ]
    if incident.outcome:
        lines.append(t("case.details.outcome", value=t(f"outcome.{incident.outcome}")))
    events = (await ctx.session.execute(
        select(IncidentEvent).where(IncidentEvent.incident_id == incident.id)
        .order_by(IncidentEvent.id.desc()).limit(TIMELINE_SHOWN))).scalars().all()
    lines.append(t("case.details.timeline"))
    for event in reversed(events):
        lines.append(f"• {cases.local(t, event.at, tz)} {t(f'event.{event.kind}')}"
                     + (f": {event.data['text']}" if event.data.get("text") else ""))
    return "\n".join(lines)


def _occurred(t: Translator, occurred: str | None) -> str:
    if occurred in ("now", "today"):
        return t(f"report.when.{occurred}")
    return occurred or "—"


async def _ask(ctx: Context, incident: Incident, _arg: str | None) -> None:
    if incident.status == IncidentStatus.CLOSED:
        ctx.reply("case.closed_already", ref=incident.ref)
        return
    ctx.goto(TEXT_FLOW, "ask", incident_id=incident.id)
    ctx.reply("case.ask.prompt", ref=incident.ref)


async def _note(ctx: Context, incident: Incident, _arg: str | None) -> None:
    ctx.goto(TEXT_FLOW, "note", incident_id=incident.id)
    ctx.reply("case.note.prompt", ref=incident.ref)


async def _reassign(ctx: Context, incident: Incident, arg: str | None) -> None:
    chain = await ancestors(ctx.session, incident.area_id)
    rows = (await ctx.session.execute(
        select(RoleAssignment).where(RoleAssignment.role == Role.OFFICER,
                                     RoleAssignment.area_id.in_(chain)))).scalars().all()
    reachable = await cases.reachable(ctx.session, [r.person_id for r in rows],
                                      ctx.clock.now())
    candidates = {r.person_id: r for r in rows
                  if r.person_id in reachable and r.person_id != incident.assigned_person_id}
    if arg is None:
        if not candidates:
            ctx.reply("case.reassign.nobody", ref=incident.ref)
            return
        choices = []
        for person_id, r in sorted(candidates.items(), key=lambda kv: chain.index(kv[1].area_id)):
            person = await ctx.session.get(Person, person_id)
            label = ctx.t("case.reassign.option", name=(person.name if person else None) or "—",
                          duty=ctx.t(f"duty.{r.duty or 'primary'}"), area=r.area.name)
            choices.append(Choice(f"case:reassign:{incident.id}:{person_id}", label))
        ctx.reply("case.reassign.prompt", choices=choices, ref=incident.ref)
        return
    if parse_number(arg or "") not in candidates:
        ctx.reply("error.stale_choice")
        return
    now = ctx.clock.now()
    target = int(arg)
    incident.assigned_person_id = target
    incident.status = IncidentStatus.NEW if incident.status != IncidentStatus.CLOSED \
        else incident.status
    incident.acknowledged_at = None
    incident.updated_at = now
    await cases.record(ctx.session, incident, "reassigned", now, actor=ctx.person,
                       role=Role.OFFICER, to=target)
    if incident.status == IncidentStatus.NEW:
        await cases.start_escalation(ctx.session, incident, now)
    events = (await ctx.session.execute(select(IncidentEvent.id).where(
        IncidentEvent.incident_id == incident.id))).scalars().all()
    await ctx.session.refresh(incident, ["assigned"])
    await cases.alert(ctx.session, incident, [cases.Recipient(target, incident.area_id,
                                                              candidates[target].duty or "")],
                      now=now, tz=ctx.settings.tz,
                      default_language=ctx.settings.default_language, round_=f"r{len(events)}")
    ctx.reply("case.reassigned", ref=incident.ref, name=incident.assigned.name
              if incident.assigned else "—")


async def _close(ctx: Context, incident: Incident, arg: str | None) -> None:
    if incident.status == IncidentStatus.CLOSED:
        ctx.reply("case.closed_already", ref=incident.ref)
        return
    if arg is None:
        ctx.reply("case.close.prompt", ref=incident.ref, choices=[
            Choice(f"case:close:{incident.id}:{o}", ctx.t(f"outcome.{o}")) for o in OUTCOMES])
        return
    if arg not in OUTCOMES:
        ctx.reply("error.stale_choice")
        return
    if arg == "duplicate":
        ctx.goto(TEXT_FLOW, "duplicate", incident_id=incident.id)
        ctx.reply("case.close.duplicate_prompt")
        return
    await _do_close(ctx, incident, arg, None)


async def _do_close(ctx: Context, incident: Incident, outcome: str,
                    duplicate_of: Incident | None) -> None:
    now = ctx.clock.now()
    incident.status = IncidentStatus.CLOSED
    incident.outcome = outcome
    incident.duplicate_of_id = duplicate_of.id if duplicate_of else None
    incident.closed_at = now
    incident.updated_at = now
    await cases.record(ctx.session, incident, "closed", now, actor=ctx.person,
                       role=Role.OFFICER, outcome=outcome,
                       duplicate_of=duplicate_of.ref if duplicate_of else None)
    await cases.progress_made(ctx.session, incident, now)
    await _tell_reporter(ctx, incident, f"closed:{now.timestamp()}", lambda t: Outbound(
        t("reporter.closed", ref=incident.ref, outcome=t(f"outcome_reporter.{outcome}"))))
    ctx.clear()
    ctx.reply("case.closed", ref=incident.ref, outcome=ctx.t(f"outcome.{outcome}"))


async def _reopen(ctx: Context, incident: Incident, _arg: str | None) -> None:
    if incident.status != IncidentStatus.CLOSED:
        ctx.reply("case.not_closed", ref=incident.ref)
        return
    ctx.goto(TEXT_FLOW, "reopen", incident_id=incident.id)
    ctx.reply("case.reopen.prompt", ref=incident.ref)


_ACTIONS = {"ack": _ack, "view": _view, "ask": _ask, "note": _note, "reassign": _reassign,
            "close": _close, "reopen": _reopen}


async def officer_text(ctx: Context) -> None:
    """Take what an officer typed for a question, a note, a duplicate ref or a reopen reason."""
    data = ctx.conversation.data or {}
    incident = await _for_officer(ctx, int(data.get("incident_id", 0)))
    if incident is None:
        ctx.clear()
        return
    text = (ctx.inbound.text or "").strip()
    if not text:
        ctx.reply("case.text_needed")
        return
    if len(text) > TEXT_MAX:
        ctx.reply("report.too_long", max=TEXT_MAX, length=len(text))
        return
    step = ctx.conversation.step
    now = ctx.clock.now()
    if step == "ask":
        await _worked(ctx, incident, "question", text)
        await _tell_reporter(ctx, incident, f"question:{now.timestamp()}", lambda t: Outbound(
            t("reporter.question", ref=incident.ref, question=text),
            [Choice(f"case:reply:{incident.id}", t("reporter.reply"))]))
        ctx.clear()
        ctx.reply("case.ask.sent", ref=incident.ref)
    elif step == "note":
        await _worked(ctx, incident, "note", text)
        ctx.clear()
        ctx.reply("case.note.saved", ref=incident.ref,
                  choices=cases.officer_actions(ctx.t, incident))
    elif step == "duplicate":
        other = (await ctx.session.execute(
            select(Incident).where(Incident.ref == text.upper()))).scalar_one_or_none()
        if other is None or other.id == incident.id or \
                not await cases.can_handle(ctx.session, ctx.person, other):
            ctx.reply("case.close.duplicate_unknown", ref=text)
            return
        await _do_close(ctx, incident, "duplicate", other)
    elif step == "reopen":
        incident.status = IncidentStatus.IN_PROGRESS
        incident.closed_at = None
        incident.outcome = None
        incident.duplicate_of_id = None
        await _worked(ctx, incident, "reopened", text)
        await _tell_reporter(ctx, incident, f"reopened:{now.timestamp()}", lambda t: Outbound(
            t("reporter.reopened", ref=incident.ref)))
        ctx.clear()
        ctx.reply("case.reopened", ref=incident.ref,
                  choices=cases.officer_actions(ctx.t, incident))
    else:
        ctx.clear()


async def _worked(ctx: Context, incident: Incident, kind: str, text: str) -> None:
    """Record an officer's work on a case: it is in progress and its clocks restart."""
    now = ctx.clock.now()
    if incident.status == IncidentStatus.ACKNOWLEDGED:
        incident.status = IncidentStatus.IN_PROGRESS
    incident.updated_at = now
    await cases.record(ctx.session, incident, kind, now, actor=ctx.person, role=Role.OFFICER,
                       text=text)
    await cases.progress_made(ctx.session, incident, now)


# ---- reporter side ----------------------------------------------------------------------------

async def _start_reply(ctx: Context, incident_id: int) -> None:
    incident = await _incident(ctx, incident_id)
    if incident is None or ctx.person is None or incident.reporter_person_id != ctx.person.id:
        _refuse(ctx, incident_id)
        return
    ctx.goto(RELAY_FLOW, "answer", incident_id=incident.id)
    ctx.reply("reporter.reply.prompt", ref=incident.ref)


async def reporter_text(ctx: Context) -> None:
    """Relay what a reporter answers (text or attachments) to the officer on the case."""
    data = ctx.conversation.data or {}
    incident = await _incident(ctx, int(data.get("incident_id", 0)))
    if incident is None or ctx.person is None or incident.reporter_person_id != ctx.person.id:
        ctx.clear()
        return
    now = ctx.clock.now()
    event_key = f"{ctx.inbound.channel}:{ctx.inbound.event_id}"
    who = "case.reporter.anonymous" if incident.anonymous else None
    sender = ctx.t(who) if who else (ctx.person.name or ctx.t("case.someone"))
    officer = incident.assigned_person_id
    for n, item in enumerate(ctx.inbound.attachments):
        problem = attachment_problem(item)
        if problem:
            ctx.reply(problem, max_mb=20)
            continue
        ctx.session.add(IncidentAttachment(
            incident_id=incident.id, channel=ctx.account.channel, kind=item.kind, ref=item.ref,
            mime_type=item.mime_type, size=item.size, name=item.name, source="reporter",
            created_at=now))
        await cases.record(ctx.session, incident, "attachment", now, role="reporter",
                           media=item.kind)
        if officer:
            await cases.notify(ctx.session, officer, lambda t, item=item: Outbound(
                t("relay.attachment", ref=incident.ref, sender=_sender(t, incident, sender)),
                media=Media(item.kind, item.ref, ctx.account.channel)),
                key=f"relay:{incident.id}:{event_key}:{n}", now=now,
                default_language=ctx.settings.default_language, priority=Priority.ALERT)
    text = (ctx.inbound.text or "").strip()
    if ctx.inbound.attachments and not text:
        ctx.reply("reporter.reply.attachment_sent", ref=incident.ref)
        return
    if not text:
        ctx.reply("reporter.reply.prompt", ref=incident.ref)
        return
    if len(text) > TEXT_MAX:
        ctx.reply("report.too_long", max=TEXT_MAX, length=len(text))
        return
    incident.updated_at = now
    await cases.record(ctx.session, incident, "answer", now, role="reporter", text=text)
    if officer:
        await cases.notify(ctx.session, officer, lambda t: Outbound(
            t("relay.answer", ref=incident.ref, sender=_sender(t, incident, sender), answer=text),
            cases.officer_actions(t, incident)), key=f"relay:{incident.id}:{event_key}",
            now=now, default_language=ctx.settings.default_language, priority=Priority.ALERT)
    ctx.clear()
    ctx.reply("reporter.reply.sent", ref=incident.ref)


def _sender(t: Translator, incident: Incident, name: str) -> str:
    return t("case.reporter.anonymous") if incident.anonymous else name


# ---- lists ------------------------------------------------------------------------------------

async def list_cases(ctx: Context) -> None:
    """/cases: an officer's open cases, oldest first."""
    if not ctx.has_role(Role.OFFICER):
        _refuse(ctx, "list")
        return
    scope = await cases.officer_scope(ctx.session, ctx.person)
    rows = (await ctx.session.execute(
        select(Incident).where(Incident.status != IncidentStatus.CLOSED, or_(
            Incident.area_id.in_(scope),
            Incident.assigned_person_id == ctx.person.id))  # type: ignore[union-attr]
        .order_by(Incident.created_at).limit(LIST_MAX))).scalars().all()
    if not rows:
        ctx.reply("cases.none")
        return
    t = ctx.t
    lines = [t("cases.header", count=len(rows))]
    for incident in rows:
        lines.append(t("cases.line", ref=incident.ref, urgent=t("case.urgent_mark")
                       if incident.urgent else "", category=t(f"category.{incident.category}"),
                       school=incident.school.name, status=t(f"status.{incident.status}"),
                       time=cases.local(t, incident.created_at, ctx.settings.tz)))
    ctx.reply_text("\n".join(lines), choices=[
        Choice(f"case:view:{i.id}", i.ref) for i in rows[:10]])


async def show_case(ctx: Context) -> None:
    """/case REF: details of one case, if the person may see it."""
    if not ctx.inbound.args:
        ctx.reply("case.usage")
        return
    ref = ctx.inbound.args[0].upper()
    incident = (await ctx.session.execute(
        select(Incident).where(Incident.ref == ref))).scalar_one_or_none()
    if incident is None or not await cases.can_handle(ctx.session, ctx.person, incident):
        _refuse(ctx, ref)
        return
    await _view(ctx, incident, None)


async def my_cases(ctx: Context) -> None:
    """/mycases: what this person reported and where each case stands."""
    if ctx.person is None:
        ctx.reply("me.stranger")
        return
    rows = (await ctx.session.execute(
        select(Incident).where(Incident.reporter_person_id == ctx.person.id)
        .order_by(Incident.created_at.desc()).limit(LIST_MAX))).scalars().all()
    if not rows:
        ctx.reply("mycases.none")
        return
    t = ctx.t
    lines = [t("mycases.header")]
    for incident in rows:
        status = t(f"reporter_status.{incident.status}")
        if incident.outcome:
            status += f" — {t(f'outcome_reporter.{incident.outcome}')}"
        lines.append(t("mycases.line", ref=incident.ref,
                       category=t(f"category.{incident.category}"),
                       time=cases.local(t, incident.created_at, ctx.settings.tz),
                       status=status))
    ctx.reply_text("\n".join(lines))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.choice("case")(case_choice)
    router.flow(TEXT_FLOW)(officer_text)
    router.flow(RELAY_FLOW)(reporter_text)
    router.command("cases")(list_cases)
    router.command("case")(show_case)
    router.command("mycases")(my_cases)
