"""The case workflow: references, routing up the area tree, alerts, access, the timeline."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.i18n import Translator
from bot.core.messages import Choice, Outbound
from bot.core.outbox import enqueue, preferred_account
from bot.services import escalation
from bot.services.codes import random_code
from storage.areas import ancestors, subtree
from storage.conversations import conversation_for
from storage.models import (
    Account,
    Area,
    Duty,
    Incident,
    IncidentEvent,
    IncidentStatus,
    Person,
    Priority,
    Role,
    RoleAssignment,
)

_LOGGER = logging.getLogger(__name__)
EXCERPT = 160
DUTY_ORDER = {Duty.PRIMARY: 0, Duty.BACKUP: 1, Duty.CHIEF: 2}


@dataclass(frozen=True)
class Recipient:
    """Someone an alert goes to, and why."""

    person_id: int
    area_id: int
    duty: str  # primary | backup | chief | admin


async def new_ref(session: AsyncSession, area: Area, now: datetime) -> str:
    """Return a fresh reference like HX-26-K7M3P: readable, unique, revealing no counts."""
    prefix = re.sub(r"[^A-Z0-9]", "", area.code.upper())[:4] or "SS"
    while True:
        ref = f"{prefix}-{now:%y}-{random_code(5)}"
        if (await session.execute(select(Incident.id).where(Incident.ref == ref))).first() is None:
            return ref


async def reachable(session: AsyncSession, person_ids: list[int], now: datetime) -> set[int]:
    """Return those people who can be alerted now: an unblocked account, and on duty."""
    if not person_ids:
        return set()
    rows = await session.execute(
        select(Account.person_id).join(Person, Person.id == Account.person_id).where(
            Account.person_id.in_(person_ids), Account.blocked_at.is_(None),
            or_(Person.off_duty_until.is_(None), Person.off_duty_until <= now)))
    return set(rows.scalars())


async def _holders(session: AsyncSession, area_id: int, role: str, now: datetime,
                   duty: str | None = None) -> list[RoleAssignment]:
    stmt = select(RoleAssignment).where(RoleAssignment.role == role,
                                        RoleAssignment.area_id == area_id)
    if duty is not None:
        stmt = stmt.where(RoleAssignment.duty == duty)
    rows = (await session.execute(stmt)).scalars().all()
    ok = await reachable(session, [r.person_id for r in rows], now)
    return sorted((r for r in rows if r.person_id in ok),
                  key=lambda r: (DUTY_ORDER.get(r.duty or "", 9), r.person_id))


async def level_recipients(session: AsyncSession, incident: Incident, level: str,
                           now: datetime) -> list[Recipient]:
    """Find who a policy level means for this case, walking up the area tree."""
    chain = await ancestors(session, incident.area_id)
    if level == "parent_admins":
        chain = chain[1:]
    for area_id in chain:
        if level in ("admins", "parent_admins"):
            found = await _holders(session, area_id, Role.ADMIN, now)
            if found:
                return [Recipient(r.person_id, area_id, "admin") for r in found]
            continue
        duty = None if level == "primary" else level
        found = await _holders(session, area_id, Role.OFFICER, now, duty)
        if found:
            if level == "primary":  # the best duty present: primary, else backup, else chief
                found = [r for r in found if r.duty == found[0].duty]
            return [Recipient(r.person_id, area_id, r.duty or Duty.PRIMARY) for r in found]
    return []


async def route(session: AsyncSession, incident: Incident, levels: tuple[str, ...],
                now: datetime) -> list[Recipient]:
    """Find who a new case goes to: the first step's levels, or admins, never nobody."""
    recipients: list[Recipient] = []
    for level in levels:
        for r in await level_recipients(session, incident, level, now):
            if r.person_id not in {x.person_id for x in recipients}:
                recipients.append(r)
    if not recipients:
        recipients = await level_recipients(session, incident, "admins", now)
    if not recipients:
        _LOGGER.error("Incident %s has nobody to route to in its whole area chain",
                      incident.ref)
    return recipients


async def start_escalation(session: AsyncSession, incident: Incident, now: datetime,
                           *, immediately: bool = False) -> None:
    """(Re)start the unacknowledged clock: step 1 next, at its time (or now)."""
    policy, _ = await escalation.effective(session, incident.area_id)
    severity = policy.for_case(incident.urgent)
    incident.escalation_step = 1
    delay = severity.delay_before(1)
    incident.next_escalation_at = None if delay is None else now + (
        timedelta(0) if immediately else delay)
    incident.progress_due_at = None
    incident.reminded_at = None


async def progress_made(session: AsyncSession, incident: Incident, now: datetime) -> None:
    """Someone worked the case: stop escalating and restart the no-progress clock."""
    incident.next_escalation_at = None
    if incident.status == IncidentStatus.CLOSED:
        incident.progress_due_at = None
        return
    if incident.status == IncidentStatus.NEW:
        return
    policy, _ = await escalation.effective(session, incident.area_id)
    incident.progress_due_at = now + policy.for_case(incident.urgent).reminder_after
    incident.reminded_at = None


async def alert_unreachable(session: AsyncSession, key: str, now: datetime) -> None:
    """An alert's recipient blocked the bot: escalate now, as if they had not acknowledged."""
    if not key.startswith("alert:"):
        return
    incident = await session.get(Incident, int(key.split(":")[1]))
    if incident is not None and incident.status == IncidentStatus.NEW:
        await record(session, incident, "recipient_unreachable", now,
                     person=int(key.split(":")[2]))
        if incident.next_escalation_at is None or incident.next_escalation_at > now:
            incident.next_escalation_at = now


async def record(session: AsyncSession, incident: Incident, kind: str, now: datetime, *,
                 actor: Person | None = None, role: str = "system", **data: object) -> None:
    """Append one line to the case's timeline."""
    session.add(IncidentEvent(incident_id=incident.id, at=now,
                              actor_person_id=actor.id if actor else None, actor_role=role,
                              kind=kind, data=dict(data)))


async def notify(session: AsyncSession, person_id: int, compose: Callable[[Translator], Outbound],
                 *, key: str, now: datetime, default_language: str,
                 priority: int = Priority.NOTICE, account_id: int | None = None) -> bool:
    """Queue a message to a person (or one of their accounts) in their own language."""
    person = await session.get(Person, person_id)
    account = await session.get(Account, account_id) if account_id else None
    if account is None or account.blocked_at is not None:
        account = await preferred_account(session, person_id)
    if person is None or account is None:
        return False
    language = person.language or account.language or default_language
    message = compose(Translator(language))
    message.language = language
    await enqueue(session, account, message, key=key, now=now, priority=priority)
    if message.choices:
        await offer(session, account, message, now)
    return True


async def offer(session: AsyncSession, account: Account, message: Outbound,
                now: datetime) -> None:
    """Let a typed number answer this message's choices, unless the person is mid-flow."""
    conversation = await conversation_for(session, account.id, now)
    if not conversation.flow:
        conversation.choices = [[c.key, c.label] for c in message.choices]


def excerpt(text: str | None) -> str:
    """Return the first words of a description, for alerts and lists."""
    if not text:
        return "—"
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1].rsplit(" ", 1)[0] + "…"


def officer_actions(t: Translator, incident: Incident) -> list[Choice]:
    """Return what an officer can do with a case now."""
    i = incident.id
    if incident.status == IncidentStatus.CLOSED:
        return [Choice(f"case:reopen:{i}", t("case.action.reopen"))]
    actions = []
    if incident.status == IncidentStatus.NEW:
        actions.append(Choice(f"case:ack:{i}", t("case.action.ack")))
    actions += [
        Choice(f"case:view:{i}", t("case.action.view")),
        Choice(f"case:ask:{i}", t("case.action.ask")),
        Choice(f"case:note:{i}", t("case.action.note")),
        Choice(f"case:reassign:{i}", t("case.action.reassign")),
        Choice(f"case:close:{i}", t("case.action.close")),
    ]
    return actions


def local(t: Translator, when: datetime, tz: object) -> str:
    """Format a time for people: 14:05 22/11/2026."""
    return when.astimezone(tz).strftime("%H:%M %d/%m/%Y")  # type: ignore[arg-type]


def alert_text(t: Translator, incident: Incident, tz: object, head_key: str | None = None) -> str:
    """Compose the alert an officer receives."""
    head_key = head_key or ("alert.urgent" if incident.urgent else "alert.new")
    head = t(head_key, ref=incident.ref, time=local(t, incident.created_at, tz))
    return t("alert.body", head=head, category=t(f"category.{incident.category}"),
             school=incident.school.name, area=incident.area.name,
             time=local(t, incident.created_at, tz), excerpt=excerpt(incident.description))


async def alert(session: AsyncSession, incident: Incident, recipients: list[Recipient], *,
                now: datetime, tz: object, default_language: str, round_: str = "0",
                head: str | None = None) -> int:
    """Queue an alert to every recipient at the highest priority; return how many."""
    sent = 0
    for r in recipients:
        def compose(t: Translator) -> Outbound:
            return Outbound(alert_text(t, incident, tz, head), officer_actions(t, incident))

        if await notify(session, r.person_id, compose, key=f"alert:{incident.id}:{r.person_id}:"
                        f"{round_}", now=now, default_language=default_language,
                        priority=Priority.ALERT):
            sent += 1
            await record(session, incident, "alerted", now, person=r.person_id, duty=r.duty,
                         area=r.area_id)
    return sent


async def officer_scope(session: AsyncSession, person: Person | None,
                       roles: tuple[str, ...] = (Role.OFFICER,)) -> set[int]:
    """Return the areas an officer (or admin) covers: their areas and everything below."""
    if person is None:
        return set()
    roots = {r.area_id for r in person.roles if r.role in roles and r.area_id}
    return set(await subtree(session, roots))


async def can_handle(session: AsyncSession, person: Person | None, incident: Incident) -> bool:
    """Tell whether person may see and act on the case: assigned, or an officer or admin of
    its area or an area above it (escalation reaches them)."""
    if person is None:
        return False
    if incident.assigned_person_id == person.id:
        return True
    # Walk up from the case (a few rows) rather than down from the person (the whole tree).
    theirs = {r.area_id for r in person.roles if r.role in (Role.OFFICER, Role.ADMIN)}
    return bool(theirs.intersection(await ancestors(session, incident.area_id)))
