"""`safeschool campaign`: awareness campaigns, created, watched, paused."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import (
    CliError,
    area_by_code,
    clock_now,
    say,
    settings_or_fail,
    tr,
    with_session,
)
from bot.core.settings import Settings
from bot.services import campaigns as svc
from bot.services.campaigns import run_stats
from bot.services.content import ContentError, calendar, library
from bot.services.directory import normalise_phone
from storage.models import Campaign, CampaignRun, CampaignStatus, Person


def _csv_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _local_time(text: str, settings: Settings) -> Any:
    for fmt in ("%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=settings.tz)
        except ValueError:
            continue
    raise CliError(say("campaign.bad_time", text=text))


def _status(status: str) -> str:
    """A campaign's status in the command line's language."""
    return tr()(f"campaign.status.{status}")


def _confirmed(warning: str) -> bool:
    """Ask at a terminal; refuse elsewhere (a script says --yes when it means it)."""
    if not sys.stdin.isatty():
        raise CliError(f"{warning} {say('campaign.confirm_with_yes')}")
    print(warning, file=sys.stderr)
    answer = input(say("campaign.confirm") + " ").strip().lower()
    if answer[:1] in ("c", "y"):  # có / yes
        return True
    print(say("campaign.not_created"), file=sys.stderr)
    return False


async def cmd_campaign_create(args: argparse.Namespace) -> int:
    """Create a campaign (a draft unless --start), print its reach, optionally preview it."""
    settings = settings_or_fail()
    try:
        entry = calendar().get(args.calendar) if args.calendar else None
        library()  # broken content files are one sentence here, not a traceback later
    except ContentError as exc:
        raise CliError(say("campaign.content_broken", error=exc)) from exc
    if args.calendar and entry is None:
        raise CliError(say("campaign.no_calendar", id=args.calendar))
    content = _csv_list(args.content) or (list(entry.content) if entry else None)
    roles = _csv_list(args.roles) or (list(entry.roles) if entry else ["parent"])
    schedules = [x for x in (args.cron and f"cron: {args.cron}",
                             args.rrule and f"rrule: {args.rrule}") if x]
    if len(schedules) > 1:
        raise CliError(say("campaign.cron_or_rrule"))
    schedule = schedules[0] if schedules else (entry.schedule if entry else "once")
    warning = svc.audience_warning(tr(), content or [], roles)
    if warning and not args.yes and not _confirmed(warning):
        return 1
    now = clock_now()
    starts = _local_time(args.at, settings) if args.at else now
    ends = _local_time(args.until, settings) if args.until else None

    async def work(session: AsyncSession) -> int:
        areas = [(await area_by_code(session, code)) for code in args.area]
        try:
            campaign = svc.new_campaign(svc.Draft(
                name=args.name or (entry.name if entry else say("campaign.default_name")),
                area_ids=[a.id for a in areas], roles=roles, starts_at=starts,
                schedule=schedule, content_ids=content, text_vi=args.text_vi,
                text_en=args.text_en, image_url=args.image,
                school_levels=_csv_list(args.levels), languages=_csv_list(args.languages),
                ends_at=ends), now=now)
        except svc.CampaignProblem as exc:
            raise CliError(exc.text(tr())) from exc
        session.add(campaign)
        await session.flush()
        if args.preview_to:
            person = (await session.execute(select(Person).where(
                Person.phone == normalise_phone(args.preview_to)))).scalar_one_or_none()
            if person is None:
                raise CliError(say("campaign.no_preview_person", phone=args.preview_to))
            reach = await svc.send_preview(
                session, campaign, person.id, now=now,
                default_language=settings.default_language, quiet=settings.quiet_hours)
        else:
            reach = await svc.reach(session, campaign, settings.default_language)
        if args.start:
            await svc.change(session, campaign, "start", now=now, tz=settings.tz)
        info = {"id": campaign.id, "status": campaign.status, "schedule": schedule,
                "next_run_at": campaign.next_run_at.astimezone(settings.tz).isoformat()
                if campaign.next_run_at else None, "targeted": reach.targeted,
                "reachable": reach.reachable, "opted_out": reach.opted_out}
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        else:
            print(say("campaign.created", id=campaign.id, status=_status(campaign.status),
                      name=campaign.name))
            print(say("campaign.reach", reachable=reach.reachable, targeted=reach.targeted,
                      opted_out=reach.opted_out, schedule=schedule))
            if not args.start:
                print(say("campaign.start_with", id=campaign.id))
        return 0

    return await with_session(settings, work)


async def _campaign(session: AsyncSession, campaign_id: int) -> Any:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CliError(say("campaign.no_such", id=campaign_id))
    return campaign


async def cmd_campaign_list(args: argparse.Namespace) -> int:
    """List campaigns, newest first."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        rows = (await session.execute(select(Campaign).order_by(Campaign.id.desc()))).scalars()
        out = [{"id": c.id, "name": c.name, "status": c.status, "schedule": c.schedule,
                "runs": c.runs_done,  # times as people there read them: local, with offset
                "next_run_at": c.next_run_at.astimezone(settings.tz).isoformat()
                if c.next_run_at else None}
               for c in rows]
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        elif not out:
            print(say("campaign.none"))
        for c in out if not args.json else []:
            print(say("campaign.row", id=c["id"], status=_status(c["status"]), runs=c["runs"],
                      next=c["next_run_at"] or "—", schedule=c["schedule"], name=c["name"]))
        return 0

    return await with_session(settings, work)


async def cmd_campaign_show(args: argparse.Namespace) -> int:
    """Show a campaign and, per run and area, who was reached."""


    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        campaign = await _campaign(session, args.id)
        runs = (await session.execute(select(CampaignRun).where(
            CampaignRun.campaign_id == campaign.id).order_by(CampaignRun.id))).scalars().all()
        report = {"id": campaign.id, "name": campaign.name, "status": campaign.status,
                  "schedule": campaign.schedule, "roles": campaign.roles, "runs": []}
        for run in runs:
            stats = await run_stats(session, run.id)
            report["runs"].append({
                "run": run.id, "scheduled_for": run.scheduled_for.astimezone(settings.tz)
                .isoformat(), "content": run.content_id, "status": run.status,
                "areas": {code: asdict(s) for code, s in stats.items()}})
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
            return 0
        print(say("campaign.heading", id=campaign.id, name=campaign.name,
                  status=_status(campaign.status), schedule=campaign.schedule,
                  roles=",".join(campaign.roles)))
        columns = say("campaign.columns").split("|")
        widths = [max(10, len(columns[0]))] + [len(c) for c in columns[1:]]
        fields = ("targeted", "sent", "failed", "unreachable", "opted_out", "waiting")
        for run in report["runs"]:
            print("  " + say("campaign.run", run=run["run"], at=run["scheduled_for"],
                             content=run["content"] or say("campaign.custom"),
                             status=run["status"]))
            print("    " + "  ".join(c.rjust(w) if i else c.ljust(w)
                                     for i, (c, w) in enumerate(zip(columns, widths, strict=True))))
            for code, s in run["areas"].items():
                cells = [code.ljust(widths[0])] + [str(s[f]).rjust(w)
                                                   for f, w in zip(fields, widths[1:], strict=True)]
                print("    " + "  ".join(cells))
        return 0

    return await with_session(settings, work)


async def cmd_campaign_state(args: argparse.Namespace) -> int:
    """Pause, resume (or start a draft) or cancel a campaign."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        campaign = await _campaign(session, args.id)
        action = "start" if args.action == "resume" and campaign.status == \
            CampaignStatus.DRAFT else args.action
        try:
            count = await svc.change(session, campaign, action, now=clock_now(), tz=settings.tz)
        except svc.CampaignProblem as exc:
            raise CliError(say("campaign.problem", id=campaign.id,
                               problem=exc.text(tr()))) from exc
        done = {"pause": "campaign.held", "cancel": "campaign.dropped"}
        print(say(done.get(action, "campaign.released"), id=campaign.id,
                  status=_status(campaign.status), count=count))
        return 0

    return await with_session(settings, work)


def cmd_campaign_calendar(_args: argparse.Namespace) -> Any:
    """List the built-in calendar."""
    async def show() -> int:
        for entry in calendar().values():
            print(f"{entry.id}\t{entry.schedule}\t{','.join(entry.roles)}\t{entry.name}")
        return 0

    return show()


def register(sub: Any) -> None:
    """Add campaign."""
    camp = sub.add_parser("campaign", help="awareness campaigns")
    csub = camp.add_subparsers(dest="campaign", required=True)
    create = csub.add_parser("create", help="create a campaign (a draft unless --start)")
    create.add_argument("--name")
    create.add_argument("--area", action="append", required=True, metavar="CODE",
                        help="area (sub-areas included); repeat for several")
    create.add_argument("--calendar", metavar="ID", help="start from a built-in calendar entry")
    create.add_argument("--content", metavar="ID[,ID…]", help="library items, used in turn")
    create.add_argument("--text-vi", help="custom text in Vietnamese")
    create.add_argument("--text-en", help="custom text in English (falls back to Vietnamese)")
    create.add_argument("--image", metavar="URL", help="a public https image")
    create.add_argument("--roles", metavar="R[,R…]", help="parent,liaison,officer,admin")
    create.add_argument("--levels", metavar="L[,L…]", help="school levels, e.g. THCS,THPT")
    create.add_argument("--languages", metavar="vi,en")
    create.add_argument("--at", metavar="TIME", help="first run, local time (default now)")
    create.add_argument("--until", metavar="TIME", help="no runs after this")
    create.add_argument("--cron", metavar="EXPR", help="recurring: 'MIN HOUR DAY MONTH WDAY'")
    create.add_argument("--rrule", metavar="RULE", help="recurring: e.g. FREQ=WEEKLY;BYDAY=MO")
    create.add_argument("--preview-to", metavar="PHONE", help="send a preview to this person")
    create.add_argument("--start", action="store_true", help="activate at once")
    create.add_argument("--yes", action="store_true",
                        help="create it even if the content was written for other recipients")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_campaign_create)
    lst = csub.add_parser("list", help="list campaigns")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_campaign_list)
    shw = csub.add_parser("show", help="a campaign and its outreach per run and area")
    shw.add_argument("id", type=int)
    shw.add_argument("--json", action="store_true")
    shw.set_defaults(func=cmd_campaign_show)
    for action in ("pause", "resume", "cancel"):
        p = csub.add_parser(action, help=f"{action} a campaign")
        p.add_argument("id", type=int)
        p.set_defaults(func=cmd_campaign_state, action=action)
    csub.add_parser("calendar", help="list the built-in calendar")\
        .set_defaults(func=cmd_campaign_calendar)
