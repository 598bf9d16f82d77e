"""Retention: what is kept only as long as it is needed (issue #13, Decree 13/2023/NĐ-CP).

Once a day (and on demand with `safeschool retention run`):
- a sent or given-up outbound message loses its text after `retention_outbox_days`, and a
  web chat's transcript line (what the bot said to a browser) is deleted then;
- a handled inbound update is deleted after `retention_inbox_days`;
- a draft (a conversation's data) untouched for `retention_draft_hours` is dropped;
- a case closed `retention_closed_days` ago is **redacted**: its texts, coordinates, the
  reporter's contact and link, the texts on its timeline and its attachments (files too) are
  removed; its reference, category, area, school, dates, outcome and timeline kinds stay, so
  every statistic of every period reads the same before and after. A case under legal hold
  (flagged, or closed as a criminal case) is kept whole.

`plan()` counts what the next run removes without changing anything (`safeschool retention
show`); `run()` does it in batches, each its own transaction, so a run stopped half-way has
lost nothing and the next one continues.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.settings import Settings
from storage.models import (
    Conversation,
    InboxItem,
    Incident,
    IncidentAttachment,
    IncidentEvent,
    IncidentStatus,
    Outbox,
    OutboxStatus,
    WebMessage,
)

_LOGGER = logging.getLogger(__name__)
BATCH = 500
HELD_OUTCOMES = ("criminal_case",)  # a criminal case opened: kept for the proceedings
TEXT_KEYS = ("text", "question", "answer", "note", "reason")  # free text on a timeline line
PURGED: dict[str, Any] = {"purged": True}  # what a message keeps of its payload


@dataclass(frozen=True)
class Policy:
    """How long each kind of data is kept."""

    outbox_days: float = 7
    inbox_days: float = 7
    draft_hours: float = 24
    closed_days: float = 730

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.retention_outbox_days, settings.retention_inbox_days,
                   settings.retention_draft_hours, settings.retention_closed_days)


@dataclass
class Plan:
    """What a run removes (or removed): counts, and the references of the cases redacted."""

    messages: int = 0
    updates: int = 0
    drafts: int = 0
    cases: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # would be redacted but for a legal hold
    files: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "updates": self.updates, "drafts": self.drafts,
                "cases": self.cases, "held": self.held, "files": self.files}


def _message_due(policy: Policy, now: datetime) -> list[Any]:
    return [Outbox.status.in_((OutboxStatus.SENT, OutboxStatus.DEAD)),
            Outbox.purged_at.is_(None),
            func.coalesce(Outbox.sent_at, Outbox.created_at)
            < now - timedelta(days=policy.outbox_days)]


def _web_due(policy: Policy, now: datetime) -> list[Any]:
    return [WebMessage.created_at < now - timedelta(days=policy.outbox_days)]


def _update_due(policy: Policy, now: datetime) -> list[Any]:
    return [InboxItem.processed_at.is_not(None),
            InboxItem.processed_at < now - timedelta(days=policy.inbox_days)]


def _draft_due(policy: Policy, now: datetime) -> list[Any]:
    return [Conversation.updated_at < now - timedelta(hours=policy.draft_hours),
            or_(Conversation.flow.is_not(None), Conversation.step.is_not(None))]


def _case_due(policy: Policy, now: datetime) -> list[Any]:
    return [Incident.status == IncidentStatus.CLOSED, Incident.redacted_at.is_(None),
            Incident.closed_at < now - timedelta(days=policy.closed_days)]


def _held() -> Any:
    return or_(Incident.legal_hold.is_(True), Incident.outcome.in_(HELD_OUTCOMES))


async def _count(session: AsyncSession, model: Any, where: list[Any]) -> int:
    return (await session.execute(
        select(func.count()).select_from(model).where(*where))).scalar_one()


async def plan(session: AsyncSession, policy: Policy, now: datetime) -> Plan:
    """What the next run would remove, changing nothing."""
    due = _case_due(policy, now)
    cases = (await session.execute(select(Incident.ref, _held()).where(*due)
                                   .order_by(Incident.closed_at, Incident.id))).all()
    redact = [ref for ref, held in cases if not held]
    files = 0
    if redact:
        files = await _count(session, IncidentAttachment, [
            IncidentAttachment.incident_id.in_(
                select(Incident.id).where(*due, ~_held()))])
    return Plan(messages=await _count(session, Outbox, _message_due(policy, now))
                + await _count(session, WebMessage, _web_due(policy, now)),
                updates=await _count(session, InboxItem, _update_due(policy, now)),
                drafts=await _count(session, Conversation, _draft_due(policy, now)),
                cases=redact, held=[ref for ref, held in cases if held], files=files)


async def _in_batches(sessions: async_sessionmaker, ids_of: Any, work: Any) -> int:
    """Select ids, work on them in one transaction, repeat until none are left."""
    done = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list((await session.execute(ids_of.limit(BATCH))).scalars())
            if not ids:
                return done
            await work(session, ids)
        done += len(ids)


async def run(sessions: async_sessionmaker, policy: Policy, now: datetime,
              media_dir: Path | None = None) -> Plan:
    """Remove what is due; return what was removed."""
    done = Plan()

    async def purge_messages(session: AsyncSession, ids: list[int]) -> None:
        await session.execute(update(Outbox).where(Outbox.id.in_(ids))
                              .values(payload=PURGED, purged_at=now))

    done.messages = await _in_batches(sessions, select(Outbox.id).where(
        *_message_due(policy, now)).order_by(Outbox.id), purge_messages)

    async def delete_web(session: AsyncSession, ids: list[int]) -> None:
        await session.execute(delete(WebMessage).where(WebMessage.id.in_(ids)))

    done.messages += await _in_batches(sessions, select(WebMessage.id).where(
        *_web_due(policy, now)).order_by(WebMessage.id), delete_web)

    async def delete_updates(session: AsyncSession, ids: list[int]) -> None:
        await session.execute(delete(InboxItem).where(InboxItem.id.in_(ids)))

    done.updates = await _in_batches(sessions, select(InboxItem.id).where(
        *_update_due(policy, now)).order_by(InboxItem.id), delete_updates)

    async def drop_drafts(session: AsyncSession, ids: list[int]) -> None:
        await session.execute(update(Conversation).where(Conversation.account_id.in_(ids))
                              .values(flow=None, step=None, data={}, choices=[]))

    done.drafts = await _in_batches(sessions, select(Conversation.account_id).where(
        *_draft_due(policy, now)).order_by(Conversation.account_id), drop_drafts)

    async def redact_cases(session: AsyncSession, ids: list[int]) -> None:
        for incident in (await session.execute(
                select(Incident).where(Incident.id.in_(ids)))).scalars():
            done.files += await _redact(session, incident, now, media_dir)
            done.cases.append(incident.ref)

    await _in_batches(sessions, select(Incident.id).where(
        *_case_due(policy, now), ~_held()).order_by(Incident.closed_at, Incident.id),
        redact_cases)
    async with sessions() as session:
        done.held = list((await session.execute(select(Incident.ref).where(
            *_case_due(policy, now), _held()).order_by(Incident.closed_at))).scalars())
    if done.messages or done.updates or done.drafts or done.cases:
        _LOGGER.info("Retention: %d message texts, %d inbound updates, %d drafts removed; "
                     "%d cases redacted (%d files); %d held", done.messages, done.updates,
                     done.drafts, len(done.cases), done.files, len(done.held))
    return done


async def _redact(session: AsyncSession, incident: Incident, now: datetime,
                  media_dir: Path | None) -> int:
    """Remove what describes the case or the people in it; keep what statistics count."""
    incident.description = incident.occurred = incident.place = incident.children = None
    incident.latitude = incident.longitude = None
    incident.reporter_name = incident.reporter_phone = None
    incident.reporter_seal = incident.reporter_tag = None
    incident.redacted_at = now
    events = (await session.execute(select(IncidentEvent).where(
        IncidentEvent.incident_id == incident.id))).scalars()
    for event in events:
        if event.data and any(k in event.data for k in TEXT_KEYS):
            event.data = {k: v for k, v in event.data.items() if k not in TEXT_KEYS}
    files = 0
    for attachment in list(incident.attachments):
        if attachment.stored_path:
            files += _remove_file(Path(attachment.stored_path), media_dir)
        await session.delete(attachment)
    session.add(IncidentEvent(incident_id=incident.id, at=now, actor_role="system",
                              kind="redacted", data={}))
    return files


def _remove_file(path: Path, media_dir: Path | None) -> int:
    """Delete a kept file (only inside the media folder when one is given)."""
    if media_dir is not None and not path.resolve().is_relative_to(media_dir.resolve()):
        _LOGGER.warning("Retention: an attachment outside the media folder was left alone")
        return 0
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return 1
    return 0
