"""The case service: the one door to cases.

Every reader and writer of a case goes through here: chat handlers, the scheduler, the
command line and (to come) the web console. `CaseService` checks who may see or do what
(by role and the area chain: an officer or admin of the case's area or of any area above
it, the officer it is assigned to, and the reporter for their own report), writes the
timeline (the case's story) and the access log (every listing, view, alert and change, with
the person and the time), and queues what must be said to whom. Handlers are chat flow only:
they turn messages into calls here and results into words.

Below the service, the building blocks the scheduler shares: references, routing up the
area tree, reachability, alerts and the escalation clock."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.choices import ChoiceData, choice_data
from bot.core.i18n import Translator
from bot.core.messages import Attachment, Choice, Media, Outbound
from bot.core.outbox import enqueue, preferred_account
from bot.services import escalation, statistics
from bot.services.codes import CODE_LENGTH, normalise_code, random_code
from bot.services.periods import Period
from bot.services.statistics import Report
from storage import crypto
from storage.areas import ancestors, subtree
from storage.conversations import conversation_for
from storage.media import local_path
from storage.models import (
    OUTCOMES,
    Account,
    Area,
    CaseAccess,
    Duty,
    Incident,
    IncidentAttachment,
    IncidentEvent,
    IncidentStatus,
    Person,
    Priority,
    Role,
    RoleAssignment,
    School,
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
                           now: datetime, area_id: int | None = None) -> list[Recipient]:
    """Find who a policy level means for this case (or for another area it may be in),
    walking up the area tree."""
    chain = await ancestors(session, area_id or incident.area_id)
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
                now: datetime, area_id: int | None = None) -> list[Recipient]:
    """Find who a new case goes to: the first step's levels, or admins, never nobody."""
    recipients: list[Recipient] = []
    for level in levels:
        for r in await level_recipients(session, incident, level, now, area_id):
            if r.person_id not in {x.person_id for x in recipients}:
                recipients.append(r)
    if not recipients:
        recipients = await level_recipients(session, incident, "admins", now, area_id)
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


def reporter_tag(person_id: int) -> str:
    """The keyed hash an anonymous case keeps of its reporter (see storage/crypto.py)."""
    return crypto.relay().tag("reporter", person_id)


def followup_digest(ref: str, code: str) -> str:
    """What a public report keeps of its follow-up code (the code is never stored)."""
    return hashlib.sha256(f"followup:{ref}:{code}".encode()).hexdigest()


def is_reporter(incident: Incident, person_id: int | None) -> bool:
    """Whether this person reported the case (an anonymous one through its tag)."""
    if person_id is None:
        return False
    if incident.reporter_person_id is not None:
        return incident.reporter_person_id == person_id
    return incident.reporter_tag is not None and incident.reporter_tag == reporter_tag(person_id)


def reporter_of(incident: Incident) -> tuple[int | None, int | None]:
    """(person, account) of the case's reporter; an anonymous one's only with the relay key."""
    if incident.reporter_seal is not None:
        return crypto.relay().unseal(incident.reporter_seal)
    return incident.reporter_person_id, incident.reporter_account_id


def reported_by_person(person_id: int) -> Any:
    """The condition for the cases a person reported, named or anonymous."""
    return or_(Incident.reporter_person_id == person_id,
               Incident.reporter_tag == reporter_tag(person_id))


def bind_reporter(incident: Incident, person_id: int | None, account_id: int | None) -> None:
    """Link the case to its reporter: in the open when named, sealed when anonymous."""
    if incident.anonymous:
        incident.reporter_person_id = incident.reporter_account_id = None
        incident.reporter_seal = crypto.relay().seal(person_id, account_id)
        incident.reporter_tag = reporter_tag(person_id) if person_id is not None else None
    else:
        incident.reporter_person_id, incident.reporter_account_id = person_id, account_id
        incident.reporter_seal = incident.reporter_tag = None


async def record(session: AsyncSession, incident: Incident, kind: str, now: datetime, *,
                 actor: Person | None = None, role: str = "system", **data: object) -> None:
    """Append one line to the case's timeline."""
    _LOGGER.debug("Case %s: %s", incident.ref, kind)
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
    message = compose(Translator(language, account.channel))
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


@choice_data("case")
@dataclass(frozen=True)
class CaseChoice(ChoiceData):
    """What a case's buttons carry: an action on a case, and its argument (an outcome, a
    person to reassign to). Officers: ack view ask note reassign close reopen; the reporter:
    reply."""

    action: str
    case_id: int
    arg: str | None = None


def officer_actions(t: Translator, incident: Incident) -> list[Choice]:
    """Return what an officer can do with a case now."""
    i = incident.id
    if incident.status == IncidentStatus.CLOSED:
        return [CaseChoice("reopen", i).choice(t("case.action.reopen"))]
    actions = []
    if incident.status == IncidentStatus.NEW:
        actions.append(CaseChoice("ack", i).choice(t("case.action.ack")))
    actions += [CaseChoice(a, i).choice(t(f"case.action.{a}"))
                for a in ("view", "ask", "note", "reassign", "close")]
    return actions


def local(t: Translator, when: datetime, tz: object) -> str:
    """Format a time for people: 14:05 22/11/2026."""
    return when.astimezone(tz).strftime("%H:%M %d/%m/%Y")  # type: ignore[arg-type]


LIVE = "%H:%M %d/%m/%Y"  # how "it is happening now" is kept: the local time it was said
DAY = "%d/%m/%Y"  # how "today" and a typed date are kept


def occurred_value(answer: str, now: datetime, tz: object) -> str:
    """What to keep for the reporter's "when": a time or a date, never the word "today",
    which is wrong by tomorrow."""
    local_now = now.astimezone(tz)  # type: ignore[arg-type]
    if answer == "now":
        return local_now.strftime(LIVE)
    if answer == "today":
        return local_now.strftime(DAY)
    return answer


def occurred_text(t: Translator, occurred: str | None, reported_at: datetime, now: datetime,
                  tz: object) -> str:
    """When it happened, said relative to now (hôm nay, hôm qua, or the date). Cases kept
    before times were stored say "now"/"today": those mean the time of the report."""
    if not occurred:
        return "—"
    local = reported_at.astimezone(tz)  # type: ignore[arg-type]
    live = occurred == "now"
    try:
        if occurred == "now":
            when = local
        elif occurred == "today":
            when = local.replace(hour=0, minute=0)
        elif len(occurred) > len("dd/mm/yyyy"):
            when, live = datetime.strptime(occurred, LIVE), True
        else:
            when = datetime.strptime(occurred, DAY)
    except ValueError:
        return occurred  # something typed before dates were checked
    today = now.astimezone(tz).date()  # type: ignore[arg-type]
    day = when.strftime(DAY)
    if when.date() == today:
        day = t("occurred.today", date=day)
    elif (today - when.date()).days == 1:
        day = t("occurred.yesterday", date=day)
    return t("occurred.live", day=day, time=when.strftime("%H:%M")) if live else day


def alert_text(t: Translator, incident: Incident, tz: object, head_key: str | None = None,
               head_values: dict[str, object] | None = None,
               unsure_of: tuple[str, ...] = ()) -> str:
    """Compose the alert an officer receives."""
    head_key = head_key or ("alert.urgent" if incident.urgent else "alert.new")
    head = t(head_key, ref=incident.ref, **(head_values or {}))
    if incident.urgent and not incident.description:
        # Sent the moment the teacher says a child is in danger: no kind, no words yet.
        # «Loại: Khác, Tóm tắt: —» would read as a report about nothing.
        if unsure_of:  # a liaison of several schools, asked which while this goes out
            return t("alert.body_unsure", head=head, schools=", ".join(unsure_of),
                     time=local(t, incident.created_at, tz))
        return t("alert.body_pending", head=head, school=incident.school.name,
                 area=incident.area.name, time=local(t, incident.created_at, tz))
    return t("alert.body", head=head, category=t(f"category.{incident.category}"),
             school=incident.school.name, area=incident.area.name,
             time=local(t, incident.created_at, tz), excerpt=excerpt(incident.description))


async def alert(session: AsyncSession, incident: Incident, recipients: list[Recipient], *,
                now: datetime, tz: object, default_language: str, round_: str = "0",
                head: str | None = None, head_values: dict[str, object] | None = None,
                unsure_of: tuple[str, ...] = ()) -> int:
    """Queue an alert to every recipient at the highest priority; return how many."""
    sent = 0
    for r in recipients:
        def compose(t: Translator) -> Outbound:
            return Outbound(alert_text(t, incident, tz, head, head_values, unsure_of),
                            officer_actions(t, incident))

        if await notify(session, r.person_id, compose, key=f"alert:{incident.id}:{r.person_id}:"
                        f"{round_}", now=now, default_language=default_language,
                        priority=Priority.ALERT):
            sent += 1
            await record(session, incident, "alerted", now, person=r.person_id, duty=r.duty,
                         area=r.area_id)
            session.add(CaseAccess(at=now, incident_id=incident.id, person_id=r.person_id,
                                   action="alerted", via="system"))
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


# ---- the service ------------------------------------------------------------------------------

FOLLOWUP_CODE_LENGTH = CODE_LENGTH + 2  # 12 of 31 symbols: it is the only key to the case
TEXT_MAX = 2000  # a question, a note, an answer, a reason
TIMELINE_SHOWN = 12
ATTACHMENTS_MAX = 10
# The smallest file any of our messengers lets a bot download (Telegram's 20 MB).
ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024
ATTACHMENT_KINDS = {"photo", "voice", "audio", "video", "video_note", "document"}
DOCUMENT_TYPES = ("image/", "video/", "audio/", "application/pdf")


def attachment_problem(item: Attachment) -> str | None:
    """Return the catalogue key explaining why an attachment is refused, or None."""
    if item.kind not in ATTACHMENT_KINDS:
        return "attachment.bad_type"
    if item.kind == "document" and not (item.mime_type or "").startswith(DOCUMENT_TYPES):
        return "attachment.bad_type"
    if item.size is not None and item.size > ATTACHMENT_MAX_BYTES:
        return "attachment.too_big"
    return None


@dataclass(frozen=True)
class Actor:
    """Who reads or changes a case, and through what (a messenger, the CLI, the console)."""

    person: Person | None
    via: str
    account_id: int | None = None

    @property
    def person_id(self) -> int | None:
        """The person's id, if anyone is behind the actor."""
        return self.person.id if self.person is not None else None

    @property
    def operator(self) -> bool:
        """The operator at the server's command line (who can read every area)."""
        return self.via == "cli" and self.person is None


class Refused(Exception):
    """The actor may not see or do this; callers say so politely, the log says who tried."""


class NoSuchCase(Refused):
    """No such case: to the actor this is the same as not being allowed to see it."""


class NoSuchArea(LookupError):
    """No area has that code."""


@dataclass
class Draft:
    """What a reporter has filled in; attachments as [kind, ref, mime, size, name]."""

    category: str | None = None
    description: str | None = None
    occurred: str | None = None
    place: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    children: str | None = None
    anonymous: bool | None = None
    attachments: list[list[Any]] = field(default_factory=list)
    # A named reporter's own contact, when the directory has none (a parent's name, phone).
    contact_name: str | None = None
    contact_phone: str | None = None


@dataclass(frozen=True)
class CaseView:
    """One case as an officer may see it: the reporter only when not anonymous."""

    incident: Incident
    reporter: Person | None
    timeline: list[IncidentEvent]

    @property
    def reporter_name(self) -> str | None:
        """The named reporter's name: what they left with the case, else the directory's."""
        if self.reporter is None:
            return None
        return self.incident.reporter_name or self.reporter.name

    @property
    def reporter_phone(self) -> str | None:
        """The named reporter's phone, the same way."""
        if self.reporter is None:
            return None
        return self.incident.reporter_phone or self.reporter.phone


@dataclass(frozen=True)
class Candidate:
    """An officer a case can be handed to."""

    person_id: int
    name: str | None
    duty: str
    area_name: str


AGE_BANDS = (("under_1_day", 1), ("1_to_3_days", 3), ("3_to_7_days", 7),
             ("7_to_30_days", 30), ("over_30_days", None))
OPEN = "open"  # a status filter: every status but closed


@dataclass(frozen=True)
class CaseFilter:
    """What a case list is narrowed to (every field optional): a status (or "open"), a
    category, urgent or not, an area (with everything below it: its ids), a school, and
    a period of report dates."""

    status: str | None = None
    category: str | None = None
    urgent: bool | None = None
    area_ids: tuple[int, ...] | None = None
    school_id: int | None = None
    period: Period | None = None

    def conditions(self, tz: Any) -> list[Any]:
        """The filter as SQL conditions on incidents."""
        where: list[Any] = []
        if self.status == OPEN:
            where.append(Incident.status != IncidentStatus.CLOSED)
        elif self.status:
            where.append(Incident.status == self.status)
        if self.category:
            where.append(Incident.category == self.category)
        if self.urgent is not None:
            where.append(Incident.urgent == self.urgent)
        if self.area_ids is not None:
            where.append(Incident.area_id.in_(self.area_ids))
        if self.school_id is not None:
            where.append(Incident.school_id == self.school_id)
        if self.period is not None:
            start, end = self.period.bounds(tz)
            where += [Incident.created_at >= start, Incident.created_at < end]
        return where


@dataclass(frozen=True)
class OpenOverview:
    """Open cases by age band, and those still unacknowledged."""

    by_age: dict[str, int]
    unacknowledged: list[Incident]


class CaseService:
    """The one door to cases; see the module's docstring."""

    def __init__(self, session: AsyncSession, *, now: datetime, tz: Any,
                 default_language: str) -> None:
        self.session = session
        self.now = now
        self.tz = tz
        self.default_language = default_language

    # ---- access ----------------------------------------------------------------------------

    async def _audit(self, actor: Actor, incidents: list[Incident], action: str) -> None:
        for incident in incidents:
            # An anonymous reporter's own looks are kept without their name.
            hidden = incident.anonymous and is_reporter(incident, actor.person_id)
            self.session.add(CaseAccess(at=self.now, incident_id=incident.id,
                                        person_id=None if hidden else actor.person_id,
                                        action=action, via=actor.via))

    def _refuse(self, actor: Actor, what: object, action: str) -> Refused:
        _LOGGER.warning("Access refused: person %s, %s on case %s", actor.person_id, action,
                        what)
        return Refused(action)

    async def _for_work(self, actor: Actor, case_id: int, action: str) -> Incident:
        """Load a case the actor may work on (officer or admin of its area chain, or the
        one it is assigned to), or raise Refused."""
        incident = await self.session.get(Incident, case_id)
        if incident is None or not await can_handle(self.session, actor.person, incident):
            raise self._refuse(actor, case_id, action)
        return incident

    async def _for_reporter(self, actor: Actor, case_id: int, action: str) -> Incident:
        """Load a case the actor reported, or raise Refused."""
        incident = await self.session.get(Incident, case_id)
        if incident is None or actor.person is None or \
                not is_reporter(incident, actor.person.id):
            raise self._refuse(actor, case_id, action)
        return incident

    async def _record(self, actor: Actor, incident: Incident, kind: str, *,
                      role: str = Role.OFFICER, **data: object) -> None:
        """A change: one line on the timeline and one row in the access log."""
        hidden = role == "reporter" and incident.anonymous
        await record(self.session, incident, kind, self.now,
                     actor=None if hidden else actor.person, role=role, **data)
        await self._audit(actor, [incident], kind)

    # ---- reading ---------------------------------------------------------------------------

    async def show(self, actor: Actor, case_id: int) -> CaseView:
        """The case's details for someone who may work on it; the look is recorded."""
        incident = await self._for_work(actor, case_id, "view")
        return await self._view(actor, incident)

    async def attachment(self, actor: Actor, case_id: int,
                         attachment_id: int) -> IncidentAttachment:
        """One file of a case, for someone who may work on it; the look is recorded."""
        incident = await self._for_work(actor, case_id, "file")
        found = next((a for a in incident.attachments if a.id == attachment_id), None)
        if found is None:
            raise self._refuse(actor, case_id, "file")
        await self._audit(actor, [incident], "opened_file")
        return found

    async def show_ref(self, actor: Actor, ref: str) -> CaseView:
        """The same, found by its reference (HX-26-K7M3P)."""
        incident = (await self.session.execute(
            select(Incident).where(Incident.ref == ref.strip().upper()))).scalar_one_or_none()
        if incident is None or not await can_handle(self.session, actor.person, incident):
            raise self._refuse(actor, ref, "view")
        return await self._view(actor, incident)

    async def _view(self, actor: Actor, incident: Incident) -> CaseView:
        await self._record(actor, incident, "viewed")
        reporter = None
        if not incident.anonymous and incident.reporter_person_id:
            reporter = await self.session.get(Person, incident.reporter_person_id)
        events = (await self.session.execute(
            select(IncidentEvent).where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id.desc()).limit(TIMELINE_SHOWN))).scalars().all()
        return CaseView(incident, reporter, list(reversed(events)))

    async def list_open(self, actor: Actor, limit: int = 20) -> list[Incident]:
        """Open cases an officer or admin covers (their areas and below, and any assigned to
        them), oldest first; each listed case is recorded."""
        _, covered = await self._work_scope(actor, "list")
        rows = list((await self.session.execute(
            select(Incident).where(Incident.status != IncidentStatus.CLOSED, covered)
            .order_by(Incident.created_at).limit(limit))).scalars())
        await self._audit(actor, rows, "listed")
        return rows

    async def _work_scope(self, actor: Actor, what: str) -> tuple[Person, Any]:
        """Who may list cases (officers and admins) and the condition of what they cover:
        their areas and below, and any case assigned to them."""
        person = actor.person
        if person is None or not any(r.role in (Role.OFFICER, Role.ADMIN) for r in person.roles):
            raise self._refuse(actor, what, "list")
        scope = await officer_scope(self.session, person, (Role.OFFICER, Role.ADMIN))
        return person, or_(Incident.area_id.in_(scope), Incident.assigned_person_id == person.id)

    async def search(self, actor: Actor, found: CaseFilter, *, limit: int = 25,
                     offset: int = 0) -> tuple[list[Incident], int]:
        """Cases the actor covers that match the filter, newest first, a page at a time, with
        how many match in all; each listed case is recorded."""
        _, covered = await self._work_scope(actor, "search")
        where = [covered, *found.conditions(self.tz)]
        total = (await self.session.execute(
            select(func.count()).select_from(Incident).where(*where))).scalar_one()
        rows = list((await self.session.execute(
            select(Incident).where(*where).order_by(Incident.created_at.desc(), Incident.id.desc())
            .limit(limit).offset(offset))).scalars())
        await self._audit(actor, rows, "listed")
        return rows, total

    async def open_overview(self, actor: Actor) -> OpenOverview:
        """Open cases the actor covers counted by age (no case is shown), and the cases
        nobody has acknowledged yet (listed, so recorded)."""
        _, covered = await self._work_scope(actor, "overview")
        ages = {name: 0 for name, _ in AGE_BANDS}
        created = (await self.session.execute(select(Incident.created_at).where(
            covered, Incident.status != IncidentStatus.CLOSED))).scalars()
        for when in created:
            days = (self.now - when).total_seconds() / 86400
            name = next(name for name, upper in AGE_BANDS if upper is None or days < upper)
            ages[name] += 1
        waiting = list((await self.session.execute(select(Incident).where(
            covered, Incident.status == IncidentStatus.NEW).order_by(Incident.created_at)
            .limit(50))).scalars())
        await self._audit(actor, waiting, "listed")
        return OpenOverview(ages, waiting)

    async def reported_by(self, actor: Actor, limit: int = 20) -> list[Incident]:
        """What this person reported, newest first (their own cases only)."""
        if actor.person is None:
            raise self._refuse(actor, "mine", "list")
        rows = list((await self.session.execute(
            select(Incident).where(reported_by_person(actor.person.id))
            .order_by(Incident.created_at.desc()).limit(limit))).scalars())
        await self._audit(actor, rows, "listed")
        return rows

    async def issue_followup(self, actor: Actor, case_id: int) -> str:
        """A public report's secret follow-up code, for its reporter to read once and keep;
        only its digest is stored (a new code replaces the last)."""
        incident = await self._for_reporter(actor, case_id, "followup_code")
        code = random_code(FOLLOWUP_CODE_LENGTH)
        incident.followup_hash = followup_digest(incident.ref, code)
        await self._audit(actor, [incident], "followup_code")
        return code

    async def follow_up(self, actor: Actor, ref: str,
                        code: str) -> tuple[Incident, str | None] | None:
        """Come back to a public report with its reference and follow-up code: the actor's
        account becomes the reporter's (so the officer's questions reach it and its answers
        reach the officer, still anonymously). Returns the case and the officer's question
        still waiting for an answer; None for a wrong pair, the same for a reference that
        does not exist."""
        incident = (await self.session.execute(
            select(Incident).where(Incident.ref == ref.strip().upper()))).scalar_one_or_none()
        given = followup_digest(ref.strip().upper(), normalise_code(code))
        if incident is None or incident.followup_hash is None or \
                not hmac.compare_digest(incident.followup_hash, given):
            _LOGGER.info("A follow-up code was refused (account %s)", actor.account_id)
            return None
        person_id, _account = reporter_of(incident)
        account = await self.session.get(Account, actor.account_id) \
            if actor.account_id is not None else None
        person = await self.session.get(Person, person_id) if person_id is not None else None
        if account is None or person is None:
            return None
        account.person = person
        bind_reporter(incident, person.id, account.id)  # questions now reach this browser
        await self.session.flush()
        await self._audit(Actor(person, actor.via, account.id), [incident], "followed_up")
        events = (await self.session.execute(
            select(IncidentEvent.kind, IncidentEvent.data)
            .where(IncidentEvent.incident_id == incident.id,
                   IncidentEvent.kind.in_(("question", "answer")))
            .order_by(IncidentEvent.id.desc()).limit(1))).first()
        waiting = events.data.get("text") if events and events.kind == "question" else None
        return incident, waiting

    async def reports_since(self, actor: Actor, since: datetime) -> int:
        """How many reports this person filed since then (the hourly limit)."""
        return (await self.session.execute(select(func.count()).select_from(Incident).where(
            reported_by_person(actor.person_id), Incident.created_at >= since))).scalar_one()

    # ---- statistics ------------------------------------------------------------------------

    async def statistics_scope(self, actor: Actor) -> list[Area]:
        """The areas whose statistics the actor may read: a committee admin's areas and a
        chief's; an area inside another of them is left out (its figures are in the upper
        one). Empty for everyone else."""
        person = actor.person
        if person is None:
            return []
        ids = {r.area_id for r in person.roles if r.area_id and (
            r.role == Role.ADMIN or (r.role == Role.OFFICER and r.duty == Duty.CHIEF))}
        areas = []
        for area_id in sorted(ids):
            if not ids.intersection((await ancestors(self.session, area_id))[1:]):
                area = await self.session.get(Area, area_id)
                if area is not None:
                    areas.append(area)
        return areas

    async def statistics(self, actor: Actor, period: Period,
                         area_code: str | None = None) -> Report:
        """The period's figures for an area the actor may read (their own area when they
        hold one; every area for the operator). Statistics carry references only."""
        area = None
        if area_code is not None:
            area = (await self.session.execute(select(Area).where(
                Area.code == area_code.strip()))).scalar_one_or_none()
            if area is None:
                raise NoSuchArea(area_code)
        if not actor.operator:
            scope = await self.statistics_scope(actor)
            if not scope:
                raise self._refuse(actor, "statistics", "statistics")
            if area is None:
                if len(scope) > 1:
                    raise self._refuse(actor, "statistics of several areas", "statistics")
                area = scope[0]
            elif not {a.id for a in scope}.intersection(
                    await ancestors(self.session, area.id)):
                raise self._refuse(actor, f"statistics of {area.code}", "statistics")
        return await statistics.compute(self.session, period, area, now=self.now, tz=self.tz)

    # ---- reporting -------------------------------------------------------------------------

    async def create(self, actor: Actor, school: School, role: str, draft: Draft, *,
                     urgent: bool, unsure_of: tuple[School, ...] = ()) -> Incident:
        """Store a report, route it and alert, all in the caller's transaction.

        unsure_of: an urgent report from a liaison of several schools, before they said
        which: the case is kept at `school` and every school's officers are alerted at once
        (see `place`, when the reporter says which)."""
        person = actor.person
        if person is None or not any(r.school_id == school.id and r.role == role
                                     for r in person.roles):
            raise self._refuse(actor, f"school {school.id}", "report")
        incident = Incident(
            ref=await new_ref(self.session, school.area, self.now), school_id=school.id,
            area_id=school.area_id, reporter_role=role,
            anonymous=role in (Role.PARENT, Role.PUBLIC), urgent=urgent, category="other",
            status=IncidentStatus.NEW, created_at=self.now, updated_at=self.now)
        _fill(incident, draft)
        bind_reporter(incident, person.id, actor.account_id)
        self.session.add(incident)
        await self.session.flush()
        await self._attach(actor, incident, draft.attachments, "reporter")
        await self.session.refresh(incident, ["school", "area"])
        await record(self.session, incident, "created", self.now,
                     actor=None if incident.anonymous else person, role=role, urgent=urgent,
                     category=incident.category)
        await self._audit(actor, [incident], "created")
        await self._route_and_alert(incident, unsure_of)
        return incident

    async def _attach(self, actor: Actor, incident: Incident, items: list[list[Any]],
                      source: str) -> None:
        for kind, ref, mime, size, name in items:
            self.session.add(IncidentAttachment(
                incident_id=incident.id, channel=actor.via, kind=kind, ref=ref, mime_type=mime,
                size=size, name=name, source=source, stored_path=local_path(ref),
                created_at=self.now))

    async def _route_and_alert(self, incident: Incident,
                               unsure_of: tuple[School, ...] = ()) -> None:
        policy, _ = await escalation.effective(self.session, incident.area_id)
        severity = policy.for_case(incident.urgent)
        incident.resolution_due_at = incident.created_at + severity.resolution_target
        recipients = await route(self.session, incident, severity.steps[0].notify, self.now)
        for other in unsure_of:
            for r in await route(self.session, incident, severity.steps[0].notify, self.now,
                                 other.area_id):
                if r.person_id not in {x.person_id for x in recipients}:
                    recipients.append(r)
        if recipients:
            incident.assigned_person_id = recipients[0].person_id
        await record(self.session, incident, "routed", self.now,
                     to=[r.person_id for r in recipients])
        names = tuple(s.name for s in (incident.school, *unsure_of)) if unsure_of else ()
        await alert(self.session, incident, recipients, now=self.now, tz=self.tz,
                    default_language=self.default_language, unsure_of=names)
        await start_escalation(self.session, incident, self.now)

    async def place(self, actor: Actor, case_id: int, school: School, role: str) -> Incident:
        """The reporter of an urgent case says which of their schools it is: the case moves
        there, the officers of that area are alerted if they were not already, and everyone
        alerted hears which school it is."""
        incident = await self._for_reporter(actor, case_id, "place")
        person = actor.person
        if person is None or not any(r.school_id == school.id and r.role == role
                                     for r in person.roles):
            raise self._refuse(actor, f"school {school.id}", "place")
        incident.school_id, incident.area_id, incident.updated_at = \
            school.id, school.area_id, self.now
        await self.session.flush()
        await self.session.refresh(incident, ["school", "area"])
        await self._record(actor, incident, "placed", role="reporter", school=school.id)
        policy, _ = await escalation.effective(self.session, incident.area_id)
        severity = policy.for_case(incident.urgent)
        here = await route(self.session, incident, severity.steps[0].notify, self.now)
        alerted = await self._alerted(incident)
        if here and incident.assigned_person_id not in {r.person_id for r in here}:
            incident.assigned_person_id = here[0].person_id
        await alert(self.session, incident, [r for r in here if r.person_id not in alerted],
                    now=self.now, tz=self.tz, default_language=self.default_language)
        for person_id in sorted(alerted):
            await notify(self.session, person_id, lambda t: Outbound(t(
                "alert.placed", ref=incident.ref, school=incident.school.name,
                area=incident.area.name)), key=f"placed:{incident.id}:{school.id}:{person_id}",
                now=self.now, default_language=self.default_language, priority=Priority.ALERT)
        return incident

    async def _alerted(self, incident: Incident) -> set[int]:
        """Everyone an alert of this case went to (the timeline's "alerted" lines)."""
        rows = (await self.session.execute(select(IncidentEvent.data).where(
            IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "alerted"))).scalars()
        return {int(d["person"]) for d in rows if d and d.get("person") is not None}

    async def add_details(self, actor: Actor, case_id: int, draft: Draft,
                          new_attachments: list[list[Any]], *, key: str) -> Incident:
        """The reporter of an urgent case sends the details; the officer gets them."""
        incident = await self._for_reporter(actor, case_id, "details")
        reporter = reporter_of(incident)
        _fill(incident, draft)
        bind_reporter(incident, *reporter)
        incident.updated_at = self.now
        await self._attach(actor, incident, new_attachments, "reporter")
        await self._record(actor, incident, "details_added", role="reporter")
        if incident.status != IncidentStatus.NEW:
            await progress_made(self.session, incident, self.now)
        if incident.assigned_person_id:
            tz = self.tz
            await notify(self.session, incident.assigned_person_id,
                         lambda t: Outbound(t("alert.updated", ref=incident.ref) + "\n\n"
                                            + alert_text(t, incident, tz),
                                            officer_actions(t, incident)),
                         key=f"updated:{incident.id}:{key}", now=self.now,
                         default_language=self.default_language, priority=Priority.ALERT)
        return incident

    # ---- working a case --------------------------------------------------------------------

    async def acknowledge(self, actor: Actor, case_id: int) -> tuple[Incident, bool]:
        """Take the case; False when someone already had (nothing changes then)."""
        incident = await self._for_work(actor, case_id, "ack")
        if incident.status != IncidentStatus.NEW:
            return incident, False
        incident.status = IncidentStatus.ACKNOWLEDGED
        incident.acknowledged_at = self.now
        incident.assigned_person_id = actor.person_id
        incident.updated_at = self.now
        await self._record(actor, incident, "acknowledged")
        await progress_made(self.session, incident, self.now)
        await self._tell_reporter(incident, "acknowledged", lambda t: Outbound(
            t("reporter.acknowledged", ref=incident.ref)))
        await self._tell_other_alerted(actor, incident)
        return incident, True

    async def _tell_other_alerted(self, actor: Actor, incident: Incident) -> None:
        others = await self._alerted(incident) - {actor.person_id}
        name = actor.person.name if actor.person else None
        for person_id in sorted(p for p in others if p):
            await notify(self.session, person_id, lambda t: Outbound(t(
                "case.taken_by", ref=incident.ref, name=name or t("case.someone"))),
                key=f"taken:{incident.id}:{person_id}", now=self.now,
                default_language=self.default_language)

    async def _tell_reporter(self, incident: Incident, event: str,
                             compose: Callable[[Translator], Outbound]) -> None:
        """Relay a message to whoever reported the case, on the account they reported from.
        An anonymous reporter's message carries no trace of the case outside its encrypted
        text: its key is hashed with the relay key."""
        person_id, account_id = reporter_of(incident)
        if person_id is None:  # a reporter who was erased
            return
        key = f"reporter:{incident.id}:{event}"
        if incident.anonymous:
            key = f"reporter:{crypto.relay().tag('notice', incident.id, event)}"
        await notify(self.session, person_id, compose, key=key, now=self.now,
                     default_language=self.default_language, priority=Priority.NOTICE,
                     account_id=account_id)

    async def may_work(self, actor: Actor, case_id: int, action: str) -> Incident:
        """Check before asking an officer for text (a question, a note, a reason)."""
        return await self._for_work(actor, case_id, action)

    async def _worked(self, actor: Actor, incident: Incident, kind: str, text: str) -> None:
        """An officer's work: the case is in progress and its clocks restart."""
        if incident.status == IncidentStatus.ACKNOWLEDGED:
            incident.status = IncidentStatus.IN_PROGRESS
        incident.updated_at = self.now
        await self._record(actor, incident, kind, text=text)
        await progress_made(self.session, incident, self.now)

    async def ask(self, actor: Actor, case_id: int, text: str) -> Incident:
        """Send the reporter a question (they answer with the Reply button)."""
        incident = await self._for_work(actor, case_id, "ask")
        await self._worked(actor, incident, "question", text)
        await self._tell_reporter(incident, f"question:{self.now.timestamp()}", lambda t: (
            Outbound(t("reporter.question", ref=incident.ref, question=text),
                     [CaseChoice("reply", incident.id).choice(t("reporter.reply"))])))
        return incident

    async def note(self, actor: Actor, case_id: int, text: str) -> Incident:
        """Add a note to the case's timeline."""
        incident = await self._for_work(actor, case_id, "note")
        await self._worked(actor, incident, "note", text)
        return incident

    async def reassign_candidates(self, actor: Actor,
                                  case_id: int) -> tuple[Incident, list[Candidate]]:
        """Officers of the case's area chain who can be alerted now, nearest area first."""
        incident = await self._for_work(actor, case_id, "reassign")
        return incident, await self._candidates(incident)

    async def _candidates(self, incident: Incident) -> list[Candidate]:
        chain = await ancestors(self.session, incident.area_id)
        rows = (await self.session.execute(
            select(RoleAssignment).where(RoleAssignment.role == Role.OFFICER,
                                         RoleAssignment.area_id.in_(chain)))).scalars().all()
        ok = await reachable(self.session, [r.person_id for r in rows], self.now)
        found: dict[int, RoleAssignment] = {}
        for r in sorted(rows, key=lambda r: chain.index(r.area_id)):
            if r.person_id in ok and r.person_id != incident.assigned_person_id:
                found.setdefault(r.person_id, r)
        out = []
        for person_id, r in found.items():
            person = await self.session.get(Person, person_id)
            out.append(Candidate(person_id, person.name if person else None,
                                 r.duty or Duty.PRIMARY, r.area.name))
        return out

    async def reassign(self, actor: Actor, case_id: int, person_id: int) -> Incident | None:
        """Hand the case to another officer of its chain and alert them; None when that
        person is no longer a candidate (a stale button)."""
        incident = await self._for_work(actor, case_id, "reassign")
        target = next((c for c in await self._candidates(incident)
                       if c.person_id == person_id), None)
        if target is None:
            return None
        incident.assigned_person_id = target.person_id
        if incident.status != IncidentStatus.CLOSED:
            incident.status = IncidentStatus.NEW
        incident.acknowledged_at = None
        incident.updated_at = self.now
        await self._record(actor, incident, "reassigned", to=target.person_id)
        if incident.status == IncidentStatus.NEW:
            await start_escalation(self.session, incident, self.now)
        events = (await self.session.execute(select(func.count()).select_from(
            IncidentEvent).where(IncidentEvent.incident_id == incident.id))).scalar_one()
        await self.session.refresh(incident, ["assigned"])
        await alert(self.session, incident,
                    [Recipient(target.person_id, incident.area_id, target.duty)],
                    now=self.now, tz=self.tz, default_language=self.default_language,
                    round_=f"r{events}",
                    head="alert.reassigned_urgent" if incident.urgent else "alert.reassigned",
                    head_values={"by": actor.person.name if actor.person and actor.person.name
                                 else "—"})
        return incident

    async def release(self, actor: Actor, person_id: int) -> list[Incident]:
        """An officer left (deactivated, or dropped from the directory; their roles are
        already ended): each open case assigned to them that the actor covers is routed
        afresh in its area, alerted as new, and its unacknowledged clock restarted."""
        rows = (await self.session.execute(select(Incident).where(
            Incident.assigned_person_id == person_id,
            Incident.status != IncidentStatus.CLOSED).order_by(Incident.id))).scalars().all()
        released = []
        for incident in rows:
            # The command line is the operator, who holds the database itself.
            if actor.via != "cli" and not await can_handle(self.session, actor.person,
                                                           incident):
                continue
            policy, _ = await escalation.effective(self.session, incident.area_id)
            levels = policy.for_case(incident.urgent).steps[0].notify
            recipients = [r for r in await route(self.session, incident, levels, self.now)
                          if r.person_id != person_id]
            incident.assigned_person_id = recipients[0].person_id if recipients else None
            incident.status = IncidentStatus.NEW
            incident.updated_at = self.now
            await self._record(actor, incident, "rerouted", role=Role.ADMIN, left=person_id,
                               to=[r.person_id for r in recipients])
            await alert(self.session, incident, recipients, now=self.now, tz=self.tz,
                        default_language=self.default_language,
                        round_=f"left{person_id}:{self.now.timestamp()}")
            await start_escalation(self.session, incident, self.now)
            released.append(incident)
        return released

    async def close(self, actor: Actor, case_id: int, outcome: str,
                    duplicate_ref: str | None = None) -> Incident:
        """Close with an outcome (a duplicate names the case it repeats, which the actor
        must be able to see: otherwise NoSuchCase)."""
        incident = await self._for_work(actor, case_id, "close")
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        duplicate_of = None
        if outcome == "duplicate":
            duplicate_of = (await self.session.execute(select(Incident).where(
                Incident.ref == (duplicate_ref or "").strip().upper()))).scalar_one_or_none()
            if duplicate_of is None or duplicate_of.id == incident.id or \
                    not await can_handle(self.session, actor.person, duplicate_of):
                raise NoSuchCase(duplicate_ref)
        incident.status = IncidentStatus.CLOSED
        incident.outcome = outcome
        incident.duplicate_of_id = duplicate_of.id if duplicate_of else None
        incident.closed_at = self.now
        incident.updated_at = self.now
        await self._record(actor, incident, "closed", outcome=outcome,
                           duplicate_of=duplicate_of.ref if duplicate_of else None)
        await progress_made(self.session, incident, self.now)
        await self._tell_reporter(incident, f"closed:{self.now.timestamp()}", lambda t: Outbound(
            t("reporter.closed", ref=incident.ref, outcome=t(f"outcome_reporter.{outcome}"))))
        await self._ask_school(incident)
        return incident

    async def _liaisons(self, incident: Incident) -> list[int]:
        return sorted(set((await self.session.execute(select(RoleAssignment.person_id).where(
            RoleAssignment.role == Role.LIAISON,
            RoleAssignment.school_id == incident.school_id))).scalars()))

    async def _ask_school(self, incident: Incident) -> None:
        """Ask the reporting school's liaisons to confirm or dispute the outcome (the
        committee counts the answers; a dispute reopens the case)."""
        asked = False
        stamp = self.now.timestamp()
        for person_id in await self._liaisons(incident):
            asked |= await notify(
                self.session, person_id, lambda t: Outbound(
                    t("confirm.ask", ref=incident.ref, school=incident.school.name,
                      category=t(f"category.{incident.category}"),
                      outcome=t(f"outcome.{incident.outcome}")),
                    [CaseChoice("confirm", incident.id).choice(t("confirm.yes")),
                     CaseChoice("dispute", incident.id).choice(t("confirm.no"))]),
                key=f"confirm:{incident.id}:{person_id}:{stamp}", now=self.now,
                default_language=self.default_language)
        incident.confirmation = "asked" if asked else None
        incident.confirmation_asked_at = self.now if asked else None

    async def confirm(self, actor: Actor, case_id: int, agreed: bool) -> Incident | None:
        """The school's liaison confirms or disputes a closed case's outcome; a dispute
        reopens it and tells the officer and the chiefs above. None when there is nothing
        to answer any more (answered already, or reopened meanwhile)."""
        incident = await self.session.get(Incident, case_id)
        if incident is None or actor.person is None or not any(
                r.role == Role.LIAISON and r.school_id == incident.school_id
                for r in actor.person.roles):
            raise self._refuse(actor, case_id, "confirm")
        if incident.confirmation != "asked" or incident.status != IncidentStatus.CLOSED:
            return None
        verdict = "confirmed" if agreed else "disputed"
        incident.confirmation = verdict
        await self._record(actor, incident, verdict, role=Role.LIAISON,
                           outcome=incident.outcome)
        if agreed:
            return incident
        outcome = incident.outcome
        await self._reopen(incident)
        told = {r.person_id for r in await level_recipients(
            self.session, incident, Duty.CHIEF, self.now)}
        if incident.assigned_person_id:
            told.add(incident.assigned_person_id)
        school = incident.school.name
        for person_id in sorted(told):
            await notify(self.session, person_id, lambda t: Outbound(
                t("confirm.disputed", ref=incident.ref, school=school,
                  outcome=t(f"outcome.{outcome}")), officer_actions(t, incident)),
                key=f"disputed:{incident.id}:{person_id}:{self.now.timestamp()}",
                now=self.now, default_language=self.default_language,
                priority=Priority.ALERT)
        return incident

    async def reopen(self, actor: Actor, case_id: int, reason: str) -> Incident | None:
        """Reopen a closed case with a reason; None when it is not closed."""
        incident = await self._for_work(actor, case_id, "reopen")
        if incident.status != IncidentStatus.CLOSED:
            return None
        await self._reopen(incident)
        await self._record(actor, incident, "reopened", text=reason)
        return incident

    async def _reopen(self, incident: Incident) -> None:
        """A closed case is open again (an officer reopened it, or the school disputed its
        outcome): in progress, its clocks restarted, and the reporter told."""
        incident.status = IncidentStatus.IN_PROGRESS
        incident.closed_at = None
        incident.outcome = None
        incident.duplicate_of_id = None
        incident.updated_at = self.now
        await progress_made(self.session, incident, self.now)
        await self._tell_reporter(incident, f"reopened:{self.now.timestamp()}",
                                  lambda t: Outbound(t("reporter.reopened", ref=incident.ref)))

    async def legal_hold(self, actor: Actor, ref: str, hold: bool) -> Incident:
        """Keep a case whole past retention (proceedings need it), or let it go again. The
        operator, or an officer or admin who may work on the case; on the timeline."""
        incident = (await self.session.execute(
            select(Incident).where(Incident.ref == ref.strip().upper()))).scalar_one_or_none()
        if incident is None:
            raise NoSuchCase(ref)
        if not actor.operator and not await can_handle(self.session, actor.person, incident):
            raise self._refuse(actor, ref, "hold")
        if incident.legal_hold != hold:
            incident.legal_hold = hold
            await self._record(actor, incident, "held" if hold else "released")
        return incident

    # ---- the reporter's side ---------------------------------------------------------------

    async def may_answer(self, actor: Actor, case_id: int) -> Incident:
        """Check that the actor reported this case before they type an answer."""
        return await self._for_reporter(actor, case_id, "reply")

    async def awaiting_answer(self, actor: Actor) -> list[Incident]:
        """The actor's own open cases where an officer's question has not been answered yet
        (so text they type outside any flow can go to the one that waits for it)."""
        if actor.person is None:
            return []
        asked = func.max(IncidentEvent.id).filter(IncidentEvent.kind == "question")
        answered = func.max(IncidentEvent.id).filter(IncidentEvent.kind == "answer")
        rows = (await self.session.execute(
            select(Incident).join(IncidentEvent, IncidentEvent.incident_id == Incident.id)
            .where(reported_by_person(actor.person.id),
                   Incident.status != IncidentStatus.CLOSED)
            .group_by(Incident.id)
            .having(asked.is_not(None), or_(answered.is_(None), answered < asked))
            .order_by(Incident.id))).scalars().all()
        return list(rows)

    async def answer(self, actor: Actor, case_id: int, text: str | None,
                     attachments: list[Attachment], *, key: str) -> Incident:
        """Relay the reporter's answer (text and/or files) to the officer on the case;
        anonymous reporters stay anonymous."""
        incident = await self._for_reporter(actor, case_id, "reply")
        person = actor.person
        assert person is not None
        officer = incident.assigned_person_id

        def sender(t: Translator) -> str:
            if incident.anonymous:
                return t("case.reporter.anonymous")
            return person.name or t("case.someone")

        for n, item in enumerate(attachments):
            self.session.add(IncidentAttachment(
                incident_id=incident.id, channel=actor.via, kind=item.kind, ref=item.ref,
                mime_type=item.mime_type, size=item.size, name=item.name, source="reporter",
                stored_path=local_path(item.ref), created_at=self.now))
            await record(self.session, incident, "attachment", self.now, role="reporter",
                         media=item.kind)
            if officer:
                await notify(self.session, officer, lambda t, item=item: Outbound(
                    t("relay.attachment", ref=incident.ref, sender=sender(t)),
                    media=Media(item.kind, item.ref, actor.via, local_path(item.ref))),
                    key=f"relay:{incident.id}:{key}:{n}", now=self.now,
                    default_language=self.default_language, priority=Priority.ALERT)
        if text:
            incident.updated_at = self.now
            await record(self.session, incident, "answer", self.now, role="reporter",
                         text=text)
            if officer:
                await notify(self.session, officer, lambda t: Outbound(
                    t("relay.answer", ref=incident.ref, sender=sender(t), answer=text),
                    officer_actions(t, incident)), key=f"relay:{incident.id}:{key}",
                    now=self.now, default_language=self.default_language,
                    priority=Priority.ALERT)
        await self._audit(actor, [incident], "answered")
        return incident


def _fill(incident: Incident, draft: Draft) -> None:
    incident.category = draft.category or incident.category or "other"
    incident.description = draft.description or incident.description
    incident.occurred = draft.occurred or incident.occurred
    incident.place = draft.place
    incident.latitude = draft.latitude
    incident.longitude = draft.longitude
    incident.children = draft.children
    if draft.anonymous is not None:
        incident.anonymous = bool(draft.anonymous)
    # A contact is kept only with a named report: choosing anonymity again drops it.
    named = not incident.anonymous
    incident.reporter_name = draft.contact_name if named else None
    incident.reporter_phone = draft.contact_phone if named else None
