"""A person's rights over their data (Decree 13/2023/NĐ-CP, issue #13): what the product
holds about them (`holdings`, for `safeschool person export`), and forgetting them (`erase`,
for `safeschool person erase` and a parent's `/forget`).

Erasing keeps every case and every figure: the person's row stays as an empty shell (its id
still names who did what on timelines and in the access log, which must stay whole), their
messenger accounts are unlinked and stripped so the same messenger starts afresh as a
stranger, their roles end (an officer's open cases are routed again first), their messages
lose their text, and the cases they reported lose the link to them: the officers then see
"the reporter's data was erased" and can no longer ask them anything. The anonymous cases a
person reported are found by the relay's keyed hash and cut the same way, but are never named
to whoever runs the command: that would give away who reported them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.messages import Outbound
from bot.core.outbox import enqueue
from bot.services import audit as audit_log
from bot.services import outreach
from bot.services.cases import Actor, CaseService, bind_reporter, record, reported_by_person
from bot.services.directory import deactivate
from bot.services.retention import PURGED
from storage.models import (
    Account,
    ConsoleLink,
    ConsoleSession,
    Conversation,
    Incident,
    IncidentStatus,
    Invitation,
    LinkCode,
    Outbox,
    OutboxStatus,
    Person,
    RoleAssignment,
    WebMessage,
)


class StillReporting(Exception):
    """The person reported cases still open by name: the officers may need them."""

    def __init__(self, refs: list[str]) -> None:
        super().__init__(", ".join(refs))
        self.refs = refs


@dataclass
class Erased:
    """What erasing removed."""

    person_id: int
    accounts: int = 0
    roles: int = 0
    messages: int = 0
    cases_cut: int = 0  # cases that lost the link to their reporter (named and anonymous)
    rerouted: list[str] = field(default_factory=list)  # open cases of an officer, routed again

    def as_json(self) -> dict[str, Any]:
        return {"person_id": self.person_id, "accounts": self.accounts, "roles": self.roles,
                "messages": self.messages, "cases_unlinked": self.cases_cut,
                "cases_rerouted": self.rerouted}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def holdings(session: AsyncSession, person: Person) -> dict[str, Any]:
    """Everything the product holds about a person, as one JSON-ready object. Anonymous
    reports are left out on purpose (see the module's docstring): their reporter reads them
    with /mycases."""
    accounts = list((await session.execute(select(Account).where(
        Account.person_id == person.id).order_by(Account.id))).scalars())
    roles = [{"role": r.role, "duty": r.duty,
              "area": r.area.code if r.area else None,
              "area_name": r.area.name if r.area else None,
              "school": r.school.code if r.school else None,
              "school_name": r.school.name if r.school else None,
              "since": _iso(r.created_at)} for r in person.roles]
    reported = (await session.execute(select(Incident).where(
        Incident.reporter_person_id == person.id).order_by(Incident.id))).scalars()
    assigned = (await session.execute(select(Incident.ref).where(
        Incident.assigned_person_id == person.id).order_by(Incident.id))).scalars()
    ids = [a.id for a in accounts]
    sent = (await session.execute(select(func.count(), func.max(Outbox.sent_at)).where(
        Outbox.account_id.in_(ids), Outbox.status == OutboxStatus.SENT))).one() if ids \
        else (0, None)
    looked = await audit_log.lines(session, person_id=person.id)
    return {
        "person": {"id": person.id, "name": person.name, "phone": person.phone,
                   "language": person.language, "alert_channel": person.alert_channel,
                   "off_duty_until": _iso(person.off_duty_until),
                   "created_at": _iso(person.created_at)},
        "awareness_messages": {"stopped": person.campaigns_stopped,
                               "topics_excluded": person.topics_excluded or [],
                               "frequency": person.campaign_frequency,
                               "last_at": _iso(person.last_campaign_at)},
        "accounts": [{"channel": a.channel, "id": a.external_id, "display_name": a.display_name,
                      "language": a.language, "created_at": _iso(a.created_at),
                      "last_seen_at": _iso(a.last_seen_at)} for a in accounts],
        "roles": roles,
        "reports": [{"ref": i.ref, "created_at": _iso(i.created_at), "category": i.category,
                     "status": i.status, "outcome": i.outcome, "urgent": i.urgent,
                     "school": i.school.code, "description": i.description,
                     "place": i.place, "occurred": i.occurred, "children": i.children,
                     "name_left": i.reporter_name, "phone_left": i.reporter_phone}
                    for i in reported],
        "cases_assigned": list(assigned),
        "messages_received": {"count": sent[0], "last_at": _iso(sent[1])},
        "activity": [line.as_json() for line in looked],
    }


async def open_named_reports(session: AsyncSession, person: Person) -> list[str]:
    """References of the open cases this person reported by name."""
    return list((await session.execute(select(Incident.ref).where(
        Incident.reporter_person_id == person.id,
        Incident.status != IncidentStatus.CLOSED).order_by(Incident.id))).scalars())


async def erase(session: AsyncSession, person: Person, cases: CaseService, actor: Actor,
                now: datetime, *, force: bool = False,
                farewell: tuple[Account, Outbound, str] | None = None) -> Erased:
    """Forget the person (see the module's docstring). Refuses (StillReporting) while they
    reported an open case by name, unless forced. `farewell` (account, message, key) is the
    last message to them, queued before their accounts are stripped."""
    still = await open_named_reports(session, person)
    if still and not force:
        raise StillReporting(still)
    done = Erased(person.id)
    # An officer's open cases go to whoever is next in their area before the roles go.
    details, released = await deactivate(session, person, cases, actor)
    done.rerouted = [i.ref for i in released]
    rest = (await session.execute(delete(RoleAssignment).where(
        RoleAssignment.person_id == person.id))).rowcount or 0
    done.roles = len(details) + int(rest)
    await session.refresh(person, ["roles"])  # the bulk delete left the loaded list stale
    # The cases they reported: named and anonymous (found by the relay's keyed hash).
    for incident in (await session.execute(select(Incident).where(
            reported_by_person(person.id)))).scalars():
        bind_reporter(incident, None, None)
        incident.reporter_name = incident.reporter_phone = None
        await record(session, incident, "reporter_erased", now)
        done.cases_cut += 1
    accounts = list((await session.execute(select(Account).where(
        Account.person_id == person.id))).scalars())
    ids = [a.id for a in accounts]
    if ids:
        # What was still to be sent to them never will be; what was sent loses its text.
        await session.execute(update(Outbox).where(
            Outbox.account_id.in_(ids),
            Outbox.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))).values(
            status=OutboxStatus.DEAD, last_error="erased", reported_at=now))
        done.messages = int((await session.execute(update(Outbox).where(
            Outbox.account_id.in_(ids)).values(
            payload=PURGED, purged_at=now, chat_id="erased"))).rowcount or 0)
        await session.execute(update(Conversation).where(Conversation.account_id.in_(ids))
                              .values(flow=None, step=None, data={}, choices=[]))
        browsers = [a.external_id for a in accounts if a.channel == "web"]
        if browsers:  # what the web chat showed them
            done.messages += int((await session.execute(delete(WebMessage).where(
                WebMessage.visitor.in_(browsers)))).rowcount or 0)
    if farewell is not None:
        account, message, key = farewell
        await enqueue(session, account, message, key=key, now=now)
    for account in accounts:  # the same messenger, back later, is a stranger
        account.external_id = f"erased:{account.id}"
        account.display_name = account.language = account.commands_digest = None
        account.person = None  # the relationship, so nothing later reads the old person
        account.blocked_at = now
    done.accounts = len(accounts)
    await session.execute(update(Invitation).where(
        Invitation.person_id == person.id, Invitation.revoked_at.is_(None)).values(
        revoked_at=now))
    await session.execute(delete(LinkCode).where(LinkCode.person_id == person.id))
    await session.execute(outreach.forget(person.id))
    await session.execute(delete(ConsoleLink).where(ConsoleLink.person_id == person.id))
    await session.execute(update(ConsoleSession).where(
        ConsoleSession.person_id == person.id, ConsoleSession.ended_at.is_(None)).values(
        ended_at=now))
    person.name = person.phone = person.language = person.alert_channel = None
    person.off_duty_until = person.last_campaign_at = None
    person.topics_excluded = person.campaign_frequency = None
    person.campaigns_stopped = True
    person.erased_at = now
    return done
