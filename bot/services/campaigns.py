"""Awareness campaigns: schedules, quiet hours, the audience streamed in batches, statistics."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.i18n import Translator
from bot.core.messages import Media, Outbound
from bot.core.outbox import insert_rows, outbox_rows
from bot.services.cases import notify
from bot.services.content import ROLE_AUDIENCE, Item, audience_mismatch, library
from bot.services.timing import QuietHours, ScheduleError, next_run, validate_schedule
from storage.areas import subtree
from storage.models import (
    Account,
    Area,
    Campaign,
    CampaignRun,
    CampaignRunArea,
    CampaignStatus,
    Outbox,
    OutboxStatus,
    Person,
    Priority,
    Role,
    RoleAssignment,
    School,
)

_LOGGER = logging.getLogger(__name__)
BATCH = 1000
MONTHLY = timedelta(days=28)
ROLES = (Role.PARENT, Role.LIAISON, Role.OFFICER, Role.ADMIN)
LANGUAGES = ("vi", "en")
ACTIONS = ("start", "pause", "resume", "cancel")
CANCELLED = "campaign cancelled"  # why a cancelled campaign's unsent rows are dead: no failure


class CampaignProblem(ValueError):
    """A campaign that cannot be created or changed; `text(t)` says why in t's language."""

    def __init__(self, key: str, **values: object) -> None:
        self.key, self.values = key, values
        super().__init__(self.text(Translator("en")))

    def text(self, t: Translator) -> str:
        """The reason, in the reader's language (a campaign's status in words too)."""
        values = dict(self.values)
        if "status" in values:
            values["status"] = t(f"campaign.status.{values['status']}")
        return t(f"campaign.problem.{self.key}", **values)


@dataclass
class Draft:
    """What someone asked for, before it is checked (the CLI's flags, the console's form)."""

    name: str
    area_ids: list[int]
    roles: list[str]
    starts_at: datetime
    schedule: str = "once"
    content_ids: list[str] | None = None
    text_vi: str | None = None
    text_en: str | None = None
    image_url: str | None = None
    school_levels: list[str] | None = None
    languages: list[str] | None = None
    ends_at: datetime | None = None


def audience_warning(t: Translator, content_ids: Iterable[str], roles: Iterable[str]) -> str | None:
    """A sentence when library content would reach people it was not written for (a tip for
    teachers sent to parents), naming the items and those recipients; else None. Whoever
    creates the campaign confirms it before it is saved."""
    roles = list(roles)
    items = audience_mismatch(content_ids, roles)
    if not items:
        return None
    unsuited = [r for r in roles if any(ROLE_AUDIENCE.get(r) not in i.audiences for i in items)]
    return t("campaign.mismatch", items="; ".join(f"«{i.title(t.language)}»" for i in items),
             roles=", ".join(t(f"role.{r}").lower() for r in unsuited))


def new_campaign(draft: Draft, *, now: datetime, person_id: int | None = None) -> Campaign:
    """Check a draft and make it a campaign (status draft, not yet added to a session).

    The one place the rules of a new campaign live: the chat, the CLI and the console all
    come through here."""
    name = (draft.name or "").strip()
    if not name:
        raise CampaignProblem("no_name")
    if not draft.area_ids:
        raise CampaignProblem("no_area")
    if not draft.roles:
        raise CampaignProblem("no_role")
    unknown = [r for r in draft.roles if r not in ROLES]
    if unknown:
        raise CampaignProblem("bad_role", roles=", ".join(unknown))
    if draft.languages and any(lang not in LANGUAGES for lang in draft.languages):
        raise CampaignProblem("bad_language")
    text_vi = (draft.text_vi or "").strip() or None
    text_en = (draft.text_en or "").strip() or None
    items = library()
    missing = [c for c in draft.content_ids or [] if c not in items]
    if missing:
        raise CampaignProblem("bad_content", ids=", ".join(missing))
    if not draft.content_ids and not (text_vi or text_en):
        raise CampaignProblem("no_content")
    image = (draft.image_url or "").strip() or None
    if image and not image.startswith("https://"):
        raise CampaignProblem("bad_image")
    try:
        validate_schedule(draft.schedule)
    except ScheduleError as exc:
        raise CampaignProblem("bad_schedule", schedule=draft.schedule) from exc
    if draft.ends_at is not None and draft.ends_at <= draft.starts_at:
        raise CampaignProblem("ends_before_start")
    return Campaign(
        name=name[:200], status=CampaignStatus.DRAFT, area_ids=list(draft.area_ids),
        roles=list(draft.roles), school_levels=draft.school_levels or None,
        languages=draft.languages or None, content_ids=draft.content_ids or None,
        text_vi=text_vi, text_en=text_en, image_url=image, schedule=draft.schedule,
        starts_at=draft.starts_at, ends_at=draft.ends_at, runs_done=0,
        created_by_person_id=person_id, created_at=now)


def allowed_actions(campaign: Campaign) -> list[str]:
    """What can be done to a campaign in its state (start a draft, pause, resume, cancel)."""
    status = campaign.status
    if status == CampaignStatus.DRAFT:
        return ["start", "cancel"]
    if status == CampaignStatus.ACTIVE:
        return ["pause", "cancel"]
    if status == CampaignStatus.PAUSED:
        return ["resume", "cancel"]
    if status == CampaignStatus.FINISHED:
        return ["cancel"]  # the last run's messages may still be waiting
    return []


async def change(session: AsyncSession, campaign: Campaign, action: str, *, now: datetime,
                 tz: ZoneInfo) -> int:
    """Start, pause, resume or cancel a campaign; returns the messages held, released or
    dropped. Refused (CampaignProblem) when the campaign's state does not allow it."""
    if action not in allowed_actions(campaign):
        raise CampaignProblem("not_now", status=campaign.status)
    if action == "pause":
        campaign.status = CampaignStatus.PAUSED
        return await hold(session, campaign.id, release=False)
    if action in ("start", "resume"):
        released = await hold(session, campaign.id, release=True)
        activate(campaign, now, tz)
        return released
    campaign.status = CampaignStatus.CANCELLED
    campaign.next_run_at = None
    return await drop_unsent(session, campaign.id, now)


async def send_preview(session: AsyncSession, campaign: Campaign, person_id: int, *,
                       now: datetime, default_language: str, quiet: str) -> Reach:
    """Send one person the next run's message as its audience will read it, with the reach
    and the schedule around it (before a campaign starts)."""
    counted = await reach(session, campaign, default_language)
    item = content_for_run(campaign, campaign.runs_done)

    def compose(t: Translator) -> Outbound:
        sample = message_for(campaign, item, t.language)
        return Outbound("\n\n".join([t("campaign.preview", name=campaign.name), sample.text, t(
            "campaign.reach", reachable=counted.reachable, targeted=counted.targeted,
            opted_out=counted.opted_out, schedule=campaign.schedule, quiet=quiet)]))

    await notify(session, person_id, compose, key=f"preview:{campaign.id}:{now.isoformat()}",
                 now=now, default_language=default_language, priority=Priority.REPLY)
    return counted


def admin_areas(roles: Iterable[RoleAssignment]) -> list[int]:
    """The areas a person administers (their campaigns may reach these and below)."""
    return sorted({r.area_id for r in roles if r.role == Role.ADMIN and r.area_id})


async def within(session: AsyncSession, campaigns: Iterable[Campaign],
                 admin_area_ids: list[int]) -> list[Campaign]:
    """The campaigns whose every area lies within an admin's areas (and below); the
    admin's subtree is read once, however many campaigns are checked."""
    if not admin_area_ids:
        return []
    scope = set(await subtree(session, admin_area_ids))
    return [c for c in campaigns if set(c.area_ids) <= scope]


async def in_scope(session: AsyncSession, campaign: Campaign,
                   admin_area_ids: list[int]) -> bool:
    """Whether one campaign lies within an admin's areas."""
    return bool(await within(session, [campaign], admin_area_ids))


def _audience(campaign: Campaign, areas: list[int]) -> Any:
    """(person id, area id) for everyone the campaign's filters select, as a subquery."""
    parts = []
    school_roles = [r for r in campaign.roles if r in (Role.PARENT, Role.LIAISON)]
    if school_roles:
        q = (select(RoleAssignment.person_id.label("pid"), School.area_id.label("aid"))
             .join(School, School.id == RoleAssignment.school_id)
             .where(RoleAssignment.role.in_(school_roles), School.area_id.in_(areas)))
        if campaign.school_levels:
            q = q.where(School.level.in_(campaign.school_levels))
        parts.append(q)
    area_roles = [r for r in campaign.roles if r in (Role.OFFICER, Role.ADMIN)]
    if area_roles:
        parts.append(select(RoleAssignment.person_id.label("pid"),
                            RoleAssignment.area_id.label("aid"))
                     .where(RoleAssignment.role.in_(area_roles),
                            RoleAssignment.area_id.in_(areas)))
    if not parts:
        raise ValueError("a campaign needs at least one role")
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()


def _language_ok(campaign: Campaign, person: Any, default: str) -> bool:
    return not campaign.languages or (person.language or default) in campaign.languages


@dataclass
class Reach:
    """How many people a campaign would reach now."""

    targeted: int = 0
    reachable: int = 0
    opted_out: int = 0


async def reach(session: AsyncSession, campaign: Campaign, default_language: str) -> Reach:
    """Count the audience, streaming it in batches like a real run would."""
    areas = await subtree(session, campaign.area_ids)
    result = Reach()
    cursor = 0
    while True:
        batch = await _batch(session, campaign, areas, cursor)
        if not batch:
            return result
        cursor = batch[-1][0]
        people, accounts = await _people_and_accounts(session, [pid for pid, _ in batch])
        for pid, _area in batch:
            person = people[pid]
            if not _language_ok(campaign, person, default_language):
                continue
            result.targeted += 1
            if person.campaigns_stopped:
                result.opted_out += 1
            elif pid in accounts:
                result.reachable += 1


async def _batch(session: AsyncSession, campaign: Campaign, areas: list[int],
                 cursor: int) -> list[tuple[int, int]]:
    audience = _audience(campaign, areas)
    rows = await session.execute(
        select(audience.c.pid, func.min(audience.c.aid)).where(audience.c.pid > cursor)
        .group_by(audience.c.pid).order_by(audience.c.pid).limit(BATCH))
    return [(pid, aid) for pid, aid in rows.all()]


async def _people_and_accounts(session: AsyncSession, ids: list[int]
                               ) -> tuple[dict[int, Any], dict[int, Any]]:
    """Load what a batch needs as plain rows: no ORM objects, no relationship loading."""
    people = {row.id: row for row in (await session.execute(
        select(Person.id, Person.language, Person.alert_channel, Person.campaigns_stopped,
               Person.topics_excluded, Person.campaign_frequency, Person.last_campaign_at)
        .where(Person.id.in_(ids)))).all()}
    accounts: dict[int, Any] = {}
    rows = (await session.execute(
        select(Account.id, Account.person_id, Account.channel, Account.external_id,
               Account.language)
        .where(Account.person_id.in_(ids), Account.blocked_at.is_(None))
        .order_by(Account.person_id, Account.last_seen_at.desc().nulls_last(), Account.id)
    )).all()
    for account in rows:
        person = people.get(account.person_id)
        current = accounts.get(account.person_id)
        if current is None or (person is not None and person.alert_channel == account.channel
                               and current.channel != account.channel):
            accounts[account.person_id] = account
    return people, accounts


def content_for_run(campaign: Campaign, run_number: int) -> Item | None:
    """The library item for the n-th run (rotating), or None for custom text."""
    if not campaign.content_ids:
        return None
    return library()[campaign.content_ids[run_number % len(campaign.content_ids)]]


def message_for(campaign: Campaign, item: Item | None, language: str) -> Outbound:
    """Compose the message as one person will read it, with how to stop."""
    t = Translator(language)
    if item is not None:
        body, image = item.text(language), item.image or campaign.image_url
    else:
        own = campaign.text_en if language == "en" else campaign.text_vi
        body, image = own or campaign.text_vi or campaign.text_en or "", campaign.image_url
    media = Media("photo", image, "web") if image else None
    return Outbound(f"{body}\n\n{t('campaign.footer')}", media=media, language=language)


def _skip_reason(person: Any, item: Item | None, now: datetime) -> str | None:
    if person.campaigns_stopped:
        return "stopped"
    if item is not None and item.topic in (person.topics_excluded or []):
        return "topic"
    if person.campaign_frequency == "monthly" and person.last_campaign_at is not None \
            and now - person.last_campaign_at < MONTHLY:
        return "frequency"
    return None


@dataclass
class BatchResult:
    """What one batch of a run did."""

    queued: int = 0
    done: bool = False
    counts: dict[int, list[int]] = field(default_factory=dict)


async def queue_batch(session: AsyncSession, run: CampaignRun, campaign: Campaign, *,
                      now: datetime, quiet: QuietHours, default_language: str,
                      areas: list[int] | None = None) -> BatchResult:
    """Queue the next batch of a run, in the caller's transaction, and move its cursor.

    The cursor and the outbox rows commit together, and every row's key names the run and the
    person, so a run resumed after a crash neither skips nor repeats anyone.
    """
    if areas is None:
        areas = await subtree(session, campaign.area_ids)
    batch = await _batch(session, campaign, areas, run.cursor)
    result = BatchResult()
    if not batch:
        result.done = True
        return result
    people, accounts = await _people_and_accounts(session, [pid for pid, _ in batch])
    item = library().get(run.content_id) if run.content_id else None
    due = quiet.next_allowed(now)
    rows: list[dict[str, Any]] = []
    stamped: list[int] = []
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # targeted, opted out, unreach
    messages: dict[str, Outbound] = {}
    for pid, area_id in batch:
        person = people[pid]
        if not _language_ok(campaign, person, default_language):
            continue
        counts[area_id][0] += 1
        if _skip_reason(person, item, now):
            counts[area_id][1] += 1
            continue
        account = accounts.get(pid)
        if account is None:
            counts[area_id][2] += 1
            continue
        language = person.language or account.language or default_language
        message = messages.get(language) or messages.setdefault(
            language, message_for(campaign, item, language))
        rows += outbox_rows(account, message, key=f"campaign:{run.id}:{pid}", now=now,
                            priority=Priority.CAMPAIGN, due=due, campaign_run_id=run.id,
                            area_id=area_id)
        stamped.append(pid)
    await insert_rows(session, rows)
    if stamped:
        await session.execute(update(Person).where(Person.id.in_(stamped))
                              .values(last_campaign_at=now))
    await _add_counts(session, run.id, counts)
    run.cursor = batch[-1][0]
    result.queued = len(stamped)
    result.counts = dict(counts)
    return result


async def _add_counts(session: AsyncSession, run_id: int,
                      counts: dict[int, list[int]]) -> None:
    if not counts:
        return
    existing = {row.area_id: row for row in (await session.execute(
        select(CampaignRunArea).where(CampaignRunArea.run_id == run_id,
                                      CampaignRunArea.area_id.in_(list(counts))))).scalars()}
    for area_id, (targeted, opted_out, unreachable) in counts.items():
        row = existing.get(area_id)
        if row is None:
            session.add(CampaignRunArea(run_id=run_id, area_id=area_id, targeted=targeted,
                                        opted_out=opted_out, unreachable=unreachable))
        else:
            row.targeted += targeted
            row.opted_out += opted_out
            row.unreachable += unreachable


async def start_due_runs(session: AsyncSession, now: datetime, tz: ZoneInfo) -> list[int]:
    """Open a run for every active campaign whose time has come; schedule its next one.

    A run missed during downtime is opened once (for its scheduled time), never once per
    missed occurrence; the unique (campaign, scheduled_for) stops a second opening.
    """
    opened = []
    campaigns = (await session.execute(
        select(Campaign).where(Campaign.status == CampaignStatus.ACTIVE,
                               Campaign.next_run_at <= now)
        .with_for_update(skip_locked=True))).scalars().all()
    for campaign in campaigns:
        scheduled = campaign.next_run_at
        assert scheduled is not None
        item = content_for_run(campaign, campaign.runs_done)
        run = CampaignRun(campaign_id=campaign.id, scheduled_for=scheduled,
                          content_id=item.id if item else None, status="running", cursor=0,
                          started_at=now)
        session.add(run)
        await session.flush()
        opened.append(run.id)
        campaign.runs_done += 1
        upcoming = next_run(campaign.schedule, max(now, scheduled), campaign.starts_at, tz)
        if upcoming is not None and campaign.ends_at is not None and upcoming > campaign.ends_at:
            upcoming = None
        campaign.next_run_at = upcoming
        if upcoming is None:
            campaign.status = CampaignStatus.FINISHED
    return opened


def activate(campaign: Campaign, now: datetime, tz: ZoneInfo) -> None:
    """Start (or restart) a campaign: compute its first run from now."""
    campaign.status = CampaignStatus.ACTIVE
    if campaign.next_run_at is not None:
        return  # resumed: a run missed while paused opens once, right away
    if campaign.schedule.strip().lower() == "once":
        campaign.next_run_at = campaign.starts_at if campaign.runs_done == 0 else None
    else:
        campaign.next_run_at = next_run(campaign.schedule, now, campaign.starts_at, tz)
    if campaign.next_run_at is None:
        campaign.status = CampaignStatus.FINISHED


async def hold(session: AsyncSession, campaign_id: int, *, release: bool) -> int:
    """Hold a campaign's unsent messages (pause), or release them (resume)."""
    runs = select(CampaignRun.id).where(CampaignRun.campaign_id == campaign_id)
    before, after = (OutboxStatus.PENDING, "held") if not release else ("held",
                                                                         OutboxStatus.PENDING)
    result = await session.execute(update(Outbox).where(
        Outbox.campaign_run_id.in_(runs), Outbox.status == before).values(status=after))
    return result.rowcount or 0


async def drop_unsent(session: AsyncSession, campaign_id: int, now: datetime) -> int:
    """Cancel a campaign's unsent messages (they are not failures: nobody is told)."""
    runs = select(CampaignRun.id).where(CampaignRun.campaign_id == campaign_id)
    result = await session.execute(update(Outbox).where(
        Outbox.campaign_run_id.in_(runs), Outbox.status.in_([OutboxStatus.PENDING, "held"])
    ).values(status=OutboxStatus.DEAD, last_error=CANCELLED, reported_at=now))
    await session.execute(update(CampaignRun).where(
        CampaignRun.campaign_id == campaign_id, CampaignRun.status == "running"
    ).values(status="cancelled", finished_at=now))
    return result.rowcount or 0


@dataclass
class AreaStats:
    """Outreach of one run in one area."""

    targeted: int = 0
    sent: int = 0
    failed: int = 0
    unreachable: int = 0
    opted_out: int = 0
    waiting: int = 0


def total(stats: dict[str, AreaStats]) -> AreaStats:
    """One run's outreach over all its areas."""
    out = AreaStats()
    for one in stats.values():
        for name in vars(out):
            setattr(out, name, getattr(out, name) + getattr(one, name))
    return out


async def run_stats(session: AsyncSession, run_id: int) -> dict[str, AreaStats]:
    """Per area code: targeted, sent, failed, unreachable, opted out, still waiting."""
    codes = dict((await session.execute(select(Area.id, Area.code))).all())
    stats: dict[str, AreaStats] = defaultdict(AreaStats)
    for row in (await session.execute(
            select(CampaignRunArea).where(CampaignRunArea.run_id == run_id))).scalars():
        s = stats[codes.get(row.area_id, str(row.area_id))]
        s.targeted, s.opted_out, s.unreachable = row.targeted, row.opted_out, row.unreachable
    rows = await session.execute(
        select(Outbox.area_id, Outbox.status, func.count()).where(
            Outbox.campaign_run_id == run_id, ~Outbox.idempotency_key.like("%#%"))
        .group_by(Outbox.area_id, Outbox.status))
    for area_id, status, n in rows.all():
        s = stats[codes.get(area_id, str(area_id))]
        if status == OutboxStatus.SENT:
            s.sent += n
        elif status == OutboxStatus.DEAD:
            s.failed += n
        else:
            s.waiting += n
    return dict(sorted(stats.items()))
