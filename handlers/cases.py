"""Working a case in the chat: officers acknowledge, ask, note, reassign, close; reporters
follow their cases and answer questions. Chat flow only: every read and change goes through
the case service, which checks who may do it and records it."""

from __future__ import annotations

from bot.core.context import Context, Router, parse_number
from bot.core.messages import Media, Outbound
from bot.services import cases
from bot.services.cases import TEXT_MAX, CaseChoice, CaseView, NoSuchCase, Refused
from handlers.services import actor, case_service
from storage.models import OUTCOMES, Incident, IncidentStatus

TEXT_FLOW = "casetext"  # an officer typing a question, a note, a duplicate ref or a reason
RELAY_FLOW = "relay"  # a reporter typing an answer to the officer
LIST_MAX = 20
CHOICES_MAX = 10


# ---- officer actions --------------------------------------------------------------------------

async def case_choice(ctx: Context) -> None:
    """Run a case button, after the service has checked who may do it."""
    chosen = ctx.chosen(CaseChoice)
    handler = _ACTIONS.get(chosen.action) if chosen else None
    if chosen is None or handler is None:
        ctx.reply("error.stale_choice")
        return
    try:
        await handler(ctx, chosen)
    except Refused:
        ctx.reply("case.not_allowed")


async def _ack(ctx: Context, chosen: CaseChoice) -> None:
    incident, taken = await case_service(ctx).acknowledge(actor(ctx), chosen.case_id)
    if not taken:
        ctx.reply("case.already_acknowledged", ref=incident.ref)
        return
    ctx.reply("case.acknowledged", choices=cases.officer_actions(ctx.t, incident),
              ref=incident.ref)


async def _view(ctx: Context, chosen: CaseChoice) -> None:
    _show(ctx, await case_service(ctx).show(actor(ctx), chosen.case_id))


def _show(ctx: Context, view: CaseView) -> None:
    incident = view.incident
    ctx.reply_text(_details(ctx, view), choices=cases.officer_actions(ctx.t, incident))
    for n, item in enumerate(incident.attachments, start=1):
        caption = ctx.t("case.attachment_caption", ref=incident.ref, n=n,
                        source=ctx.t(f"case.source.{item.source}"))
        ctx.replies.append(Outbound(caption, media=Media(item.kind, item.ref, item.channel,
                                                         item.stored_path)))


def _details(ctx: Context, view: CaseView) -> str:
    t, tz, incident = ctx.t, ctx.settings.tz, view.incident
    reporter = t("case.reporter.anonymous")
    if view.reporter is not None:
        reporter = t("case.reporter.named", name=view.reporter_name or "—",
                     role=t(f"role.{incident.reporter_role}"),
                     phone=view.reporter_phone or "—")
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
        t("case.details.when", value=cases.occurred_text(
            t, incident.occurred, incident.created_at, ctx.clock.now(), tz)),
        t("case.details.where", value=place),
        t("case.details.children", value=incident.children or "—"),
        t("case.details.reporter", value=reporter),
        t("case.details.assigned", value=assigned),
        t("case.details.description", value=incident.description or "—"),
    ]
    if incident.outcome:
        lines.append(t("case.details.outcome", value=t(f"outcome.{incident.outcome}")))
    lines.append(t("case.details.timeline"))
    for event in view.timeline:
        lines.append(f"• {cases.local(t, event.at, tz)} {t(f'event.{event.kind}')}"
                     + (f": {event.data['text']}" if event.data.get("text") else ""))
    return "\n".join(lines)


async def _ask(ctx: Context, chosen: CaseChoice) -> None:
    incident = await case_service(ctx).may_work(actor(ctx), chosen.case_id, "ask")
    if incident.status == IncidentStatus.CLOSED:
        ctx.reply("case.closed_already", ref=incident.ref)
        return
    ctx.goto(TEXT_FLOW, "ask", incident_id=incident.id)
    ctx.reply("case.ask.prompt", ref=incident.ref)


async def _note(ctx: Context, chosen: CaseChoice) -> None:
    incident = await case_service(ctx).may_work(actor(ctx), chosen.case_id, "note")
    ctx.goto(TEXT_FLOW, "note", incident_id=incident.id)
    ctx.reply("case.note.prompt", ref=incident.ref)


async def _reassign(ctx: Context, chosen: CaseChoice) -> None:
    service = case_service(ctx)
    if chosen.arg is None:
        incident, candidates = await service.reassign_candidates(actor(ctx), chosen.case_id)
        if not candidates:
            ctx.reply("case.reassign.nobody", ref=incident.ref)
            return
        ctx.reply("case.reassign.prompt", ref=incident.ref, choices=[
            CaseChoice("reassign", incident.id, str(c.person_id)).choice(ctx.t(
                "case.reassign.option", name=c.name or "—", duty=ctx.t(f"duty.{c.duty}"),
                area=c.area_name)) for c in candidates])
        return
    done = await service.reassign(actor(ctx), chosen.case_id, parse_number(chosen.arg) or 0)
    if done is None:  # that officer is no longer someone the case can go to
        ctx.reply("error.stale_choice")
        return
    ctx.reply("case.reassigned", ref=done.ref, name=done.assigned.name if done.assigned else "—")


async def _close(ctx: Context, chosen: CaseChoice) -> None:
    service = case_service(ctx)
    incident = await service.may_work(actor(ctx), chosen.case_id, "close")
    if incident.status == IncidentStatus.CLOSED:
        ctx.reply("case.closed_already", ref=incident.ref)
        return
    if chosen.arg is None:
        ctx.reply("case.close.prompt", ref=incident.ref, choices=[
            CaseChoice("close", incident.id, o).choice(ctx.t(f"outcome.{o}"))
            for o in OUTCOMES])
        return
    if chosen.arg not in OUTCOMES:
        ctx.reply("error.stale_choice")
        return
    if chosen.arg == "duplicate":
        ctx.goto(TEXT_FLOW, "duplicate", incident_id=incident.id)
        ctx.reply("case.close.duplicate_prompt")
        return
    _closed(ctx, await service.close(actor(ctx), incident.id, chosen.arg))


def _closed(ctx: Context, incident: Incident) -> None:
    ctx.clear()
    ctx.reply("case.closed", ref=incident.ref, outcome=ctx.t(f"outcome.{incident.outcome}"))


async def _reopen(ctx: Context, chosen: CaseChoice) -> None:
    incident = await case_service(ctx).may_work(actor(ctx), chosen.case_id, "reopen")
    if incident.status != IncidentStatus.CLOSED:
        ctx.reply("case.not_closed", ref=incident.ref)
        return
    ctx.goto(TEXT_FLOW, "reopen", incident_id=incident.id)
    ctx.reply("case.reopen.prompt", ref=incident.ref)


async def _start_reply(ctx: Context, chosen: CaseChoice) -> None:
    incident = await case_service(ctx).may_answer(actor(ctx), chosen.case_id)
    ctx.goto(RELAY_FLOW, "answer", incident_id=incident.id)
    ctx.reply("reporter.reply.prompt", ref=incident.ref)


async def _school_answer(ctx: Context, chosen: CaseChoice) -> None:
    agreed = chosen.action == "confirm"
    incident = await case_service(ctx).confirm(actor(ctx), chosen.case_id, agreed)
    if incident is None:
        ctx.reply("confirm.already")
        return
    ctx.reply("confirm.thanks" if agreed else "confirm.reopened", ref=incident.ref)


_ACTIONS = {"ack": _ack, "view": _view, "ask": _ask, "note": _note, "reassign": _reassign,
            "close": _close, "reopen": _reopen, "reply": _start_reply,
            "confirm": _school_answer, "dispute": _school_answer}


async def officer_text(ctx: Context) -> None:
    """Take what an officer typed for a question, a note, a duplicate ref or a reopen reason."""
    case_id = int((ctx.conversation.data or {}).get("incident_id", 0))
    service, who = case_service(ctx), actor(ctx)
    try:
        await service.may_work(who, case_id, "text")
    except Refused:
        ctx.clear()
        ctx.reply("case.not_allowed")
        return
    text = (ctx.inbound.text or "").strip()
    if not text:
        ctx.reply("case.text_needed")
        return
    if len(text) > TEXT_MAX:
        ctx.reply("report.too_long", max=TEXT_MAX, length=len(text))
        return
    step = ctx.conversation.step
    if step == "ask":
        incident = await service.ask(who, case_id, text)
        ctx.clear()
        ctx.reply("case.ask.sent", ref=incident.ref)
    elif step == "note":
        incident = await service.note(who, case_id, text)
        ctx.clear()
        ctx.reply("case.note.saved", ref=incident.ref,
                  choices=cases.officer_actions(ctx.t, incident))
    elif step == "duplicate":
        try:
            incident = await service.close(who, case_id, "duplicate", duplicate_ref=text)
        except NoSuchCase:
            ctx.reply("case.close.duplicate_unknown", ref=text)
            return
        _closed(ctx, incident)
    elif step == "reopen":
        reopened = await service.reopen(who, case_id, text)
        ctx.clear()
        if reopened is None:
            ctx.reply("error.stale_choice")
            return
        ctx.reply("case.reopened", ref=reopened.ref,
                  choices=cases.officer_actions(ctx.t, reopened))
    else:
        ctx.clear()


# ---- reporter side ----------------------------------------------------------------------------

async def reporter_text(ctx: Context) -> None:
    """Relay what a reporter answers (text or attachments) to the officer on the case."""
    case_id = int((ctx.conversation.data or {}).get("incident_id", 0))
    service, who = case_service(ctx), actor(ctx)
    try:
        incident = await service.may_answer(who, case_id)
    except Refused:
        ctx.clear()
        return
    kept = []
    for item in ctx.inbound.attachments:
        problem = cases.attachment_problem(item)
        if problem:
            ctx.reply(problem, max_mb=cases.ATTACHMENT_MAX_BYTES // (1024 * 1024))
        else:
            kept.append(item)
    text = (ctx.inbound.text or "").strip()
    too_long = len(text) > TEXT_MAX
    if kept or (text and not too_long):
        await service.answer(who, incident.id, None if too_long else text or None, kept,
                             key=f"{ctx.inbound.channel}:{ctx.inbound.event_id}")
    if ctx.inbound.attachments and not text:
        ctx.reply("reporter.reply.attachment_sent", ref=incident.ref)
        return
    if not text:
        ctx.reply("reporter.reply.prompt", ref=incident.ref)
        return
    if too_long:
        ctx.reply("report.too_long", max=TEXT_MAX, length=len(text))
        return
    ctx.clear()
    ctx.reply("reporter.reply.sent", ref=incident.ref)


async def answer_typed_directly(ctx: Context, text: str) -> bool:
    """A reporter types an answer without pressing Reply: it goes to the officer when one
    question waits for them; with several, they are asked which case it is about."""
    service, who = case_service(ctx), actor(ctx)
    waiting = await service.awaiting_answer(who)
    if not waiting:
        return False
    if len(waiting) > 1:
        ctx.reply("reporter.reply.which", [
            CaseChoice("reply", i.id).choice(i.ref) for i in waiting[:CHOICES_MAX]])
        return True
    if len(text) > TEXT_MAX:
        ctx.reply("report.too_long", max=TEXT_MAX, length=len(text))
        return True
    incident = await service.answer(who, waiting[0].id, text, [],
                                    key=f"{ctx.inbound.channel}:{ctx.inbound.event_id}")
    ctx.reply("reporter.reply.sent", ref=incident.ref)
    return True


# ---- lists ------------------------------------------------------------------------------------

async def list_cases(ctx: Context) -> None:
    """/cases: the open cases an officer or admin covers, oldest first."""
    try:
        rows = await case_service(ctx).list_open(actor(ctx), LIST_MAX)
    except Refused:
        ctx.reply("case.not_allowed")
        return
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
        CaseChoice("view", i.id).choice(i.ref) for i in rows[:CHOICES_MAX]])


async def show_case(ctx: Context) -> None:
    """/case REF: details of one case, if the person may see it."""
    if not ctx.inbound.args:
        ctx.reply("case.usage")
        return
    try:
        _show(ctx, await case_service(ctx).show_ref(actor(ctx), ctx.inbound.args[0]))
    except Refused:
        ctx.reply("case.not_allowed")


async def my_cases(ctx: Context) -> None:
    """/mycases: what this person reported and where each case stands."""
    if ctx.person is None:
        ctx.reply("me.stranger")
        return
    rows = await case_service(ctx).reported_by(actor(ctx), LIST_MAX)
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
    router.choice(CaseChoice)(case_choice)
    router.flow(TEXT_FLOW)(officer_text)
    router.flow(RELAY_FLOW)(reporter_text)
    router.command("cases")(list_cases)
    router.command("case")(show_case)
    router.command("mycases")(my_cases)
