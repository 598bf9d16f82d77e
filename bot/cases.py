"""The case workflow: references, routing up the area tree, alerts, access, the timeline."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Translator
from bot.messages import Choice, Outbound
from bot.outbox import enqueue, preferred_account
from storage.invitations import random_code
from storage.models import (
    Account,
    Area,
    Conversation,
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


async def ancestors(session: AsyncSession, area_id: int) -> list[int]:
    """Return area_id and the ids of every area above it, nearest first."""
    chain: list[int] = []
    current: int | None = area_id
    while current is not None and current not in chain:
        chain.append(current)
        current = (await session.execute(
            select(Area.parent_id).where(Area.id == current))).scalar_one_or_none()
    return chain


async def new_ref(session: AsyncSession, area: Area, now: datetime) -> str:
    """Return a fresh reference like HX-26-K7M3P: readable, unique, revealing no counts."""
    prefix = re.sub(r"[^A-Z0-9]", "", area.code.upper())[:4] or "SS"
    while True:
        ref = f"{prefix}-{now:%y}-{random_code(5)}"
        if (await session.execute(select(Incident.id).where(Incident.ref == ref))).first() is None:
            return ref


async def _reachable(session: AsyncSession, person_ids: list[int]) -> set[int]:
    if not person_ids:
        return set()
    rows = await session.execute(select(Account.person_id).where(
        Account.person_id.in_(person_ids), Account.blocked_at.is_(None)))
    return set(rows.scalars())


async def route(session: AsyncSession, incident: Incident) -> list[Recipient]:
    """Find who must be alerted: the nearest area (walking up) with a reachable officer.

    Primary officers are alerted; backups too when the case is urgent. An area whose officers
    are all backups or chiefs still counts as covered. With no officer anywhere, the admins of
    the nearest area that has one get it: a case never goes nowhere.
    """
    chain = await ancestors(session, incident.area_id)
    for area_id in chain:
        officers = (await session.execute(select(RoleAssignment).where(
            RoleAssignment.role == Role.OFFICER, RoleAssignment.area_id == area_id)
        )).scalars().all()
        reachable = await _reachable(session, [o.person_id for o in officers])
        officers = sorted((o for o in officers if o.person_id in reachable),
                          key=lambda o: DUTY_ORDER.get(o.duty or "", 9))
        if not officers:
            continue
        first_duty = officers[0].duty
        wanted = {first_duty}
        if incident.urgent:
            wanted.add(Duty.BACKUP)
        return [Recipient(o.person_id, area_id, o.duty or Duty.PRIMARY)
                for o in officers if o.duty in wanted]
    for area_id in chain:
        admins = (await session.execute(select(RoleAssignment.person_id).where(
            RoleAssignment.role == Role.ADMIN, RoleAssignment.area_id == area_id))).scalars().all()
        reachable = await _reachable(session, list(admins))
        if reachable:
            return [Recipient(pid, area_id, "admin") for pid in admins if pid in reachable]
    _LOGGER.error("Incident %s has nobody to route to in its whole area chain", incident.ref)
    return []


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
    conversation = await session.get(Conversation, account.id)
    if conversation is None:
        session.add(Conversation(account_id=account.id, data={}, updated_at=now,
                                 choices=[[c.key, c.label] for c in message.choices]))
    elif not conversation.flow:
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


def alert_text(t: Translator, incident: Incident, tz: object) -> str:
    """Compose the alert an officer receives."""
    head = t("alert.urgent" if incident.urgent else "alert.new", ref=incident.ref)
    return t("alert.body", head=head, category=t(f"category.{incident.category}"),
             school=incident.school.name, area=incident.area.name,
             time=local(t, incident.created_at, tz), excerpt=excerpt(incident.description))


async def alert(session: AsyncSession, incident: Incident, recipients: list[Recipient], *,
                now: datetime, tz: object, default_language: str, round_: str = "0") -> int:
    """Queue an alert to every recipient at the highest priority; return how many."""
    sent = 0
    for r in recipients:
        def compose(t: Translator) -> Outbound:
            return Outbound(alert_text(t, incident, tz), officer_actions(t, incident))

        if await notify(session, r.person_id, compose, key=f"alert:{incident.id}:{r.person_id}:"
                        f"{round_}", now=now, default_language=default_language,
                        priority=Priority.ALERT):
            sent += 1
            await record(session, incident, "alerted", now, person=r.person_id, duty=r.duty,
                         area=r.area_id)
    return sent


async def officer_scope(session: AsyncSession, person: Person | None) -> set[int]:
    """Return the areas an officer covers: their assigned areas and everything below them."""
    if person is None:
        return set()
    roots = {r.area_id for r in person.roles if r.role == Role.OFFICER and r.area_id}
    if not roots:
        return set()
    rows = (await session.execute(select(Area.id, Area.parent_id))).all()
    children: dict[int | None, list[int]] = {}
    for area_id, parent_id in rows:
        children.setdefault(parent_id, []).append(area_id)
    scope, stack = set(), list(roots)
    while stack:
        area_id = stack.pop()
        if area_id in scope:
            continue
        scope.add(area_id)
        stack.extend(children.get(area_id, []))
    return scope


async def can_handle(session: AsyncSession, person: Person | None, incident: Incident) -> bool:
    """Tell whether person may see and act on the case: assigned, or an officer above it."""
    if person is None:
        return False
    if incident.assigned_person_id == person.id:
        return True
    return incident.area_id in await officer_scope(session, person)
