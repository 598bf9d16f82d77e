"""What /readyz and /metrics read from the database: the delivery queue and the cases that
wait for someone. Cheap queries on indexed columns: a scrape every 15 s costs nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Incident, IncidentStatus, Outbox, OutboxStatus, Priority

WAITING = (OutboxStatus.PENDING, OutboxStatus.SENDING)


@dataclass
class Snapshot:
    """The queue and the cases, now."""

    depth: dict[tuple[str, int], int] = field(default_factory=dict)  # (channel, priority) → n
    oldest_alert_seconds: float = 0.0  # the oldest unsent alert's wait (0: none waits)
    unacknowledged: dict[int, int] = field(default_factory=dict)  # escalation step → cases
    past_target: int = 0  # open cases past their resolution target


async def snapshot(session: AsyncSession, now: datetime) -> Snapshot:
    """Read the queue and the waiting cases."""
    found = Snapshot()
    for channel, priority, count in (await session.execute(
            select(Outbox.channel, Outbox.priority, func.count())
            .where(Outbox.status.in_(WAITING)).group_by(Outbox.channel, Outbox.priority))):
        found.depth[(channel, priority)] = count
    oldest = (await session.execute(select(func.min(Outbox.created_at)).where(
        Outbox.status.in_(WAITING), Outbox.priority == Priority.ALERT))).scalar_one_or_none()
    if oldest is not None:
        if oldest.tzinfo is None:  # func.min bypasses the column type on some dialects
            oldest = oldest.replace(tzinfo=now.tzinfo)
        found.oldest_alert_seconds = max(0.0, (now - oldest).total_seconds())
    for step, count in (await session.execute(
            select(Incident.escalation_step, func.count())
            .where(Incident.status == IncidentStatus.NEW)
            .group_by(Incident.escalation_step))):
        found.unacknowledged[step or 0] = count
    found.past_target = (await session.execute(select(func.count()).select_from(Incident).where(
        Incident.status != IncidentStatus.CLOSED, Incident.resolution_due_at < now))) \
        .scalar_one()
    return found
