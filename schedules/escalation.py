"""Escalation and reminders: read what is due from the incidents table and act on it.

Nothing here is kept in memory between ticks; a tick after a restart finds whatever fell due
while the process was down and acts on it once (the next deadline is then counted from now).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.clock import Clock
from bot.core.i18n import Translator
from bot.core.messages import Outbound
from bot.core.settings import Settings
from bot.services import cases, escalation
from storage.models import (
    Area,
    Incident,
    IncidentStatus,
    Outbox,
    OutboxStatus,
    Priority,
    Role,
    RoleAssignment,
)

_LOGGER = logging.getLogger(__name__)
BATCH = 200
OPEN = (IncidentStatus.NEW, IncidentStatus.ACKNOWLEDGED, IncidentStatus.IN_PROGRESS)
DAILY = timedelta(days=1) - timedelta(minutes=5)  # a little slack so a daily tick never skips


async def _due(session: AsyncSession, *where: object) -> list[Incident]:
    stmt = select(Incident).where(*where).order_by(Incident.id).limit(BATCH)
    return list((await session.execute(stmt.with_for_update(skip_locked=True))).scalars())


async def escalate_due(sessions: async_sessionmaker, clock: Clock, settings: Settings) -> int:
    """Fire the escalation step of every unacknowledged case whose time has come."""
    now = clock.now()
    fired = 0
    async with sessions() as session, session.begin():
        for incident in await _due(session, Incident.status == IncidentStatus.NEW,
                                   Incident.next_escalation_at <= now):
            policy, _ = await escalation.effective(session, incident.area_id)
            severity = policy.for_case(incident.urgent)
            index = incident.escalation_step
            step = severity.step(index)
            recipients: list[cases.Recipient] = []
            for level in step.notify:
                for r in await cases.level_recipients(session, incident, level, now):
                    if r.person_id not in {x.person_id for x in recipients}:
                        recipients.append(r)
            await cases.alert(session, incident, recipients, now=now, tz=settings.tz,
                              default_language=settings.default_language, round_=f"e{index}",
                              head="alert.escalated")
            await cases.record(session, incident, "escalated", now, step=index,
                               levels=list(step.notify), to=[r.person_id for r in recipients])
            if incident.escalated_at is None:
                incident.escalated_at = now  # statistics: it went beyond the first officer
            if incident.assigned_person_id is None and recipients:
                incident.assigned_person_id = recipients[0].person_id
            incident.escalation_step = index + 1
            delay = severity.delay_before(index + 1)
            incident.next_escalation_at = None if delay is None else now + delay
            fired += 1
    return fired


async def remind_stalled(sessions: async_sessionmaker, clock: Clock, settings: Settings) -> int:
    """Acknowledged cases with no progress: remind once, then put them back to escalation."""
    now = clock.now()
    acted = 0
    async with sessions() as session, session.begin():
        for incident in await _due(session, Incident.status.in_(
                [IncidentStatus.ACKNOWLEDGED, IncidentStatus.IN_PROGRESS]),
                Incident.progress_due_at <= now):
            policy, _ = await escalation.effective(session, incident.area_id)
            severity = policy.for_case(incident.urgent)
            officer = incident.assigned_person_id
            if incident.reminded_at is None:
                hours = int(severity.revert_after.total_seconds() // 3600) or 1
                if officer:
                    await cases.notify(
                        session, officer, lambda t, i=incident, h=hours: Outbound(
                            t("reminder.no_progress", ref=i.ref, hours=h),
                            cases.officer_actions(t, i)),
                        key=f"stalled:{incident.id}:{now.isoformat()}", now=now,
                        default_language=settings.default_language, priority=Priority.ALERT)
                incident.reminded_at = now
                incident.progress_due_at = now + severity.revert_after
                await cases.record(session, incident, "reminded", now)
            else:
                incident.status = IncidentStatus.NEW
                incident.acknowledged_at = None
                await cases.record(session, incident, "unacknowledged", now)
                await cases.start_escalation(session, incident, now, immediately=True)
                if officer:
                    await cases.notify(
                        session, officer, lambda t, i=incident: Outbound(
                            t("reminder.reverted", ref=i.ref), cases.officer_actions(t, i)),
                        key=f"reverted:{incident.id}:{now.isoformat()}", now=now,
                        default_language=settings.default_language, priority=Priority.ALERT)
            acted += 1
    return acted


async def remind_overdue(sessions: async_sessionmaker, clock: Clock, settings: Settings) -> int:
    """Cases open past their resolution target: a daily reminder and a list for the chief."""
    now = clock.now()
    day = now.astimezone(settings.tz).date().isoformat()
    digests: dict[int, list[Incident]] = defaultdict(list)
    reminded = 0
    async with sessions() as session, session.begin():
        # The deadline is stored on the case (set from its policy when it was reported), so
        # only cases actually due are read, however many are open.
        rows = await _due(session, Incident.status.in_(OPEN), Incident.resolution_due_at <= now,
                          or_(Incident.overdue_reminded_at.is_(None),
                              Incident.overdue_reminded_at <= now - DAILY))
        for incident in rows:
            assert incident.resolution_due_at is not None
            target = incident.resolution_due_at - incident.created_at
            incident.overdue_reminded_at = now
            days = (now - incident.created_at).days
            target_days = max(1, round(target.total_seconds() / 86400))
            if incident.assigned_person_id:
                await cases.notify(
                    session, incident.assigned_person_id,
                    lambda t, i=incident, d=days, g=target_days: Outbound(
                        t("reminder.overdue", ref=i.ref, days=d, target=g),
                        cases.officer_actions(t, i)),
                    key=f"overdue:{incident.id}:{day}", now=now,
                    default_language=settings.default_language, priority=Priority.NOTICE)
            await cases.record(session, incident, "overdue", now, days=days)
            for chief in await cases.level_recipients(session, incident, "chief", now):
                digests[chief.person_id].append(incident)
            reminded += 1
        for person_id, items in digests.items():
            await cases.notify(
                session, person_id, lambda t, items=items: Outbound(_digest(t, items, now)),
                key=f"overdue-digest:{person_id}:{day}", now=now,
                default_language=settings.default_language, priority=Priority.NOTICE)
    return reminded


def _digest(t: Translator, items: list[Incident], now: datetime) -> str:
    lines = [t("overdue.digest", count=len(items))]
    for incident in items:
        lines.append(t("overdue.line", ref=incident.ref, days=(now - incident.created_at).days,
                       school=incident.school.name, status=t(f"status.{incident.status}")))
    return "\n".join(lines)


DEAD_REPORT = "deadreport:"


async def report_dead(sessions: async_sessionmaker, clock: Clock, settings: Settings) -> int:
    """Tell the top-level admins, once, about messages that could not be delivered."""
    now = clock.now()
    async with sessions() as session, session.begin():
        rows = list((await session.execute(
            select(Outbox).where(Outbox.status == OutboxStatus.DEAD,
                                 Outbox.reported_at.is_(None))
            .order_by(Outbox.id).limit(BATCH).with_for_update(skip_locked=True))).scalars())
        if not rows:
            return 0
        for row in rows:
            row.reported_at = now
        # A report about undeliverable reports would only loop.
        rows = [r for r in rows if not r.idempotency_key.startswith(DEAD_REPORT)]
        if not rows:
            return 0
        admins = await _top_admins(session)
        reasons = Counter((r.last_error or "?").split(":")[0][:80] for r in rows)
        alerts = sum(1 for r in rows if r.priority == Priority.ALERT)
        for person_id in admins:
            await cases.notify(
                session, person_id, lambda t: Outbound(t(
                    "dead.report", count=len(rows), alerts=alerts,
                    reasons="; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(5)))),
                key=f"{DEAD_REPORT}{person_id}:{rows[0].id}-{rows[-1].id}", now=now,
                default_language=settings.default_language, priority=Priority.NOTICE)
        if not admins:
            _LOGGER.error("%d message(s) undeliverable and no admin to tell", len(rows))
        return len(rows)


async def _top_admins(session: AsyncSession) -> list[int]:
    """Admins of root areas (the committee at the top), else any admin."""
    rows = (await session.execute(
        select(RoleAssignment.person_id, Area.parent_id)
        .join(Area, Area.id == RoleAssignment.area_id)
        .where(RoleAssignment.role == Role.ADMIN))).all()
    top = sorted({pid for pid, parent in rows if parent is None})
    return top or sorted({pid for pid, _ in rows})


async def tick(sessions: async_sessionmaker, clock: Clock, settings: Settings) -> dict[str, int]:
    """Run every clock-driven case rule once; return what each did."""
    done = {}
    for name, job in (("escalated", escalate_due), ("stalled", remind_stalled),
                      ("overdue", remind_overdue), ("dead", report_dead)):
        try:
            done[name] = await job(sessions, clock, settings)
        except Exception:
            _LOGGER.exception("Scheduled case rule %s failed; it runs again next tick", name)
            done[name] = 0
    return done

