"""`safeschool` command line: run the bot, migrate, manage the directory and invitations."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.settings import Settings, safe_url
from storage import db

EXIT_USAGE = 2
NO_LINK = "(bot username unknown: set SAFESCHOOL_TELEGRAM_BOT_USERNAME or start the bot once)"
_LOGGER = logging.getLogger("safeschool")


class CliError(Exception):
    """An error to print as one sentence, exiting with code 2."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "SAFESCHOOL_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        raise CliError(f"{field} is invalid: {first['msg']}") from exc


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Open the database, or say in one sentence why it cannot be opened."""
    engine = db.create_engine(settings.database_url)
    try:
        try:
            await db.check_connection(engine)
        except db.DatabaseUnavailable as exc:
            raise CliError(f"cannot open the database {safe_url(settings.database_url)}: "
                           f"{exc}") from exc
        yield engine
    finally:
        await engine.dispose()


async def _with_session(settings: Settings,
                        work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """Open the database (migrating it if needed) and run work in one transaction."""
    async with _database(settings) as engine:
        await db.upgrade(engine)
        async with db.sessionmaker(engine)() as session, session.begin():
            return await work(session)


def _now() -> Any:
    from bot.clock import Clock

    return Clock().now()


# ---- run / db ---------------------------------------------------------------------------------

async def cmd_run(args: argparse.Namespace) -> int:
    """Run the bot until interrupted."""
    from bot.app import App, ConfigError, check_settings
    from bot.channels.base import FatalChannelError
    from bot.logs import setup_logging

    settings = _settings()
    secrets = [s.get_secret_value() for s in (
        settings.telegram_token, settings.telegram_webhook_secret, settings.zalo_token,
        settings.zalo_webhook_secret) if s]
    setup_logging(args.log_level, secrets)
    try:
        check_settings(settings)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    app = App(settings)
    try:
        await app.run_forever()
    except db.DatabaseUnavailable as exc:
        await app.engine.dispose()
        raise CliError(f"cannot open the database {safe_url(settings.database_url)}: "
                       f"{exc}") from exc
    except FatalChannelError as exc:
        await app.stop()
        raise CliError(str(exc)) from exc
    except OSError as exc:
        await app.stop()
        raise CliError(f"cannot start: {exc}") from exc
    return 0


async def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    async with _database(_settings()) as engine:
        applied = await db.upgrade(engine)
    print(f"Applied {len(applied)} migration(s)." if applied else "Database is up to date.")
    return 0


# ---- directory --------------------------------------------------------------------------------

async def cmd_directory_import(args: argparse.Namespace) -> int:
    """Import directory files all-or-nothing."""
    from storage.directory import DirectoryError, import_rows, read_files

    rows, problems = read_files(Path(p) for p in args.files)
    if problems:
        return _report_problems(problems)
    print(f"Read {len(rows)} row(s) from {len(args.files)} file(s); checking…", file=sys.stderr)

    async def work(session: AsyncSession) -> int:
        result = await import_rows(session, rows, _now())
        for kind in ("areas", "schools", "people", "officers", "liaisons"):
            if result.created[kind] or result.updated[kind]:
                print(f"{kind}: {result.created[kind]} new, {result.updated[kind]} updated")
        return 0

    try:
        return await _with_session(_settings(), work)
    except DirectoryError as exc:
        return _report_problems(exc.problems)


def _report_problems(problems: list[Any]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"Nothing was imported: {len(problems)} problem(s) to fix.", file=sys.stderr)
    return 1


async def cmd_directory_show(_args: argparse.Namespace) -> int:
    """Print the area tree with counts."""
    from storage.directory import AreaNode, directory_tree

    async def work(session: AsyncSession) -> int:
        roots = await directory_tree(session)
        if not roots:
            print("The directory is empty. Import it with `safeschool directory import FILE`.")
            return 0

        def show(node: AreaNode, depth: int) -> None:
            level = f" ({node.area.level})" if node.area.level else ""
            print(f"{'  ' * depth}{node.area.code}  {node.area.name}{level} — "
                  f"schools {node.schools}, officers {node.officers}, "
                  f"liaisons {node.liaisons}, parents {node.parents}")
            for child in node.children:
                show(child, depth + 1)

        for root in roots:
            show(root, 0)
        return 0

    return await _with_session(_settings(), work)


# ---- invitations ------------------------------------------------------------------------------

async def cmd_invite_create(args: argparse.Namespace) -> int:
    """Create an invitation code and print it with its deep link."""
    from storage.invitations import (
        InvitationError,
        create_invitation,
        deep_link,
        telegram_username,
    )

    settings = _settings()

    async def work(session: AsyncSession) -> int:
        expires_in = (parse_expiry(args.expires) if args.expires
                      else timedelta(days=settings.invite_default_expiry_days))
        try:
            invitation = await create_invitation(
                session, role=args.role, now=_now(), expires_in=expires_in,
                area_code=args.area, school_code=args.school, person_phone=args.person,
                duty=args.duty, uses=args.uses)
        except (InvitationError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        username = await telegram_username(session, settings.telegram_bot_username)
        link = deep_link(username, invitation.code)
        scope = invitation.school or invitation.area
        info = {
            "code": invitation.code,
            "link": link,
            "role": invitation.role,
            "duty": invitation.duty,
            "scope": scope.code if scope else None,
            "scope_name": scope.name if scope else None,
            "person": invitation.person.phone if invitation.person else None,
            "uses": invitation.max_uses,
            "expires_at": invitation.expires_at.astimezone(settings.tz).isoformat(),
        }
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        else:
            print(f"Code: {invitation.code}")
            print(f"Link: {link or NO_LINK}")
            duty = f" ({invitation.duty})" if invitation.duty else ""
            print(f"Role: {invitation.role}{duty} — {info['scope_name']} [{info['scope']}]")
            print(f"Uses: {invitation.max_uses}; expires {info['expires_at']}")
        return 0

    return await _with_session(settings, work)


async def cmd_invite_export(args: argparse.Namespace) -> int:
    """Create personal codes for every directory person without an account; write a workbook."""
    from openpyxl import Workbook

    from storage.invitations import deep_link, telegram_username, unused_code
    from storage.models import Account, Invitation, Person

    settings = _settings()
    out = Path(args.out)
    if out.suffix.lower() != ".xlsx":
        raise CliError("--out must name an .xlsx file")

    async def work(session: AsyncSession) -> int:
        now = _now()
        expires_in = (parse_expiry(args.expires) if args.expires
                      else timedelta(days=settings.invite_default_expiry_days))
        username = await telegram_username(session, settings.telegram_bot_username)
        linked = select(Account.person_id).where(Account.person_id.is_not(None))
        people = (await session.execute(
            select(Person).where(Person.phone.is_not(None), Person.id.not_in(linked))
            .order_by(Person.name))).scalars().all()
        book = Workbook()
        sheet = book.active
        sheet.title = "invitations"
        sheet.append(["name", "phone", "role", "duty", "scope_code", "scope_name", "code",
                      "link", "expires_at"])
        count = 0
        for person in people:
            staff = [r for r in person.roles if r.role in ("officer", "liaison", "admin")]
            if not staff:
                continue
            role = staff[0]
            invitation = (await session.execute(
                select(Invitation).where(
                    Invitation.person_id == person.id, Invitation.revoked_at.is_(None),
                    Invitation.expires_at > now, Invitation.used_count < Invitation.max_uses)
                .order_by(Invitation.expires_at.desc()).limit(1))).scalar_one_or_none()
            if invitation is None:
                invitation = Invitation(
                    code=await unused_code(session), role=role.role, area_id=role.area_id,
                    school_id=role.school_id, duty=role.duty, person_id=person.id, max_uses=1,
                    used_count=0, expires_at=now + expires_in, created_at=now)
                session.add(invitation)
                await session.flush()
            scope = role.school or role.area
            sheet.append([person.name, person.phone, role.role, role.duty or "",
                          scope.code if scope else "", scope.name if scope else "",
                          invitation.code, deep_link(username, invitation.code) or "",
                          invitation.expires_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")])
            count += 1
        out.parent.mkdir(parents=True, exist_ok=True)
        book.save(out)
        print(f"Wrote {count} personal invitation(s) to {out}")
        return 0

    return await _with_session(settings, work)


def parse_expiry(text: str) -> Any:
    """Parse --expires for the CLI, as one sentence on error."""
    from storage.invitations import InvitationError, parse_duration

    try:
        return parse_duration(text)
    except InvitationError as exc:
        raise CliError(str(exc)) from exc


async def cmd_school_codes(args: argparse.Namespace) -> int:
    """List each school's public parent-join code."""
    from storage.invitations import deep_link, telegram_username
    from storage.models import Area, School

    settings = _settings()

    async def work(session: AsyncSession) -> int:
        username = await telegram_username(session, settings.telegram_bot_username)
        rows = (await session.execute(
            select(School, Area).join(Area, School.area_id == Area.id).order_by(School.code)
        )).all()
        out = [{"school": s.code, "name": s.name, "area": a.code, "parent_code": s.parent_code,
                "link": deep_link(username, s.parent_code)} for s, a in rows]
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            for row in out:
                print(f"{row['school']}\t{row['parent_code']}\t{row['name']}\t{row['area']}\t"
                      f"{row['link'] or ''}")
        return 0

    return await _with_session(settings, work)


# ---- escalation -------------------------------------------------------------------------------

async def _area(session: AsyncSession, code: str) -> Any:
    from storage.models import Area

    area = (await session.execute(select(Area).where(Area.code == code))).scalar_one_or_none()
    if area is None:
        raise CliError(f"no area with code {code!r} in the directory")
    return area


async def cmd_escalation_show(args: argparse.Namespace) -> int:
    """Print the policy that applies to an area (JSON, ready to edit and `set` again)."""
    from bot import escalation

    async def work(session: AsyncSession) -> int:
        area = await _area(session, args.area)
        policy, source = await escalation.effective(session, area.id)
        where = "built-in default" if source is None else (
            "set on this area" if source.id == area.id else f"inherited from {source.code}")
        print(f"# {area.code} {area.name}: {where}", file=sys.stderr)
        print(json.dumps(escalation.to_dict(policy), ensure_ascii=False, indent=2))
        return 0

    return await _with_session(_settings(), work)


async def cmd_escalation_set(args: argparse.Namespace) -> int:
    """Validate a policy file and make it the area's own policy (sub-areas inherit it)."""
    from bot import escalation
    from storage.models import EscalationPolicy

    try:
        policy = escalation.load_file(Path(args.file))
    except escalation.PolicyError as exc:
        raise CliError(f"policy not set: {exc}") from exc

    async def work(session: AsyncSession) -> int:
        area = await _area(session, args.area)
        row = await session.get(EscalationPolicy, area.id)
        data = escalation.to_dict(policy)
        if row is None:
            session.add(EscalationPolicy(area_id=area.id, policy=data, updated_at=_now()))
        else:
            row.policy, row.updated_at = data, _now()
        steps = ", ".join(f"{s['after']}: {'+'.join(s['notify'])}"
                          for s in data["urgent"]["steps"])
        print(f"Policy set on {area.code} ({area.name}); urgent: {steps}")
        return 0

    return await _with_session(_settings(), work)


# ---- campaigns --------------------------------------------------------------------------------

def _csv_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _local_time(text: str, settings: Settings) -> Any:
    from datetime import datetime

    for fmt in ("%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=settings.tz)
        except ValueError:
            continue
    raise CliError(f"cannot read the time {text!r}; write e.g. '2026-12-01 09:00'")


async def cmd_campaign_create(args: argparse.Namespace) -> int:
    """Create a campaign (a draft unless --start), print its reach, optionally preview it."""
    from bot import campaigns as svc
    from bot.content import ContentError, calendar, library
    from storage.models import Campaign, CampaignStatus, Person

    settings = _settings()
    try:
        entry = calendar().get(args.calendar) if args.calendar else None
        items = library()
    except ContentError as exc:
        raise CliError(f"the content files are broken: {exc}") from exc
    if args.calendar and entry is None:
        raise CliError(f"no calendar entry {args.calendar!r}; see `safeschool campaign calendar`")
    content = _csv_list(args.content) or (list(entry.content) if entry else None)
    if content and any(c not in items for c in content):
        raise CliError(f"unknown content {[c for c in content if c not in items]}; "
                       "see bot/content/library.toml")
    if not content and not (args.text_vi or args.text_en):
        raise CliError("give --content ID[,ID…], --text-vi/--text-en, or --calendar ID")
    roles = _csv_list(args.roles) or (list(entry.roles) if entry else ["parent"])
    if any(r not in ("parent", "liaison", "officer", "admin") for r in roles):
        raise CliError("--roles takes parent, liaison, officer, admin")
    schedules = [x for x in (args.cron and f"cron: {args.cron}",
                             args.rrule and f"rrule: {args.rrule}") if x]
    if len(schedules) > 1:
        raise CliError("give --cron or --rrule, not both")
    schedule = schedules[0] if schedules else (entry.schedule if entry else "once")
    try:
        svc.validate_schedule(schedule)
    except svc.ScheduleError as exc:
        raise CliError(str(exc)) from exc
    now = _now()
    starts = _local_time(args.at, settings) if args.at else now
    ends = _local_time(args.until, settings) if args.until else None

    async def work(session: AsyncSession) -> int:
        areas = [(await _area(session, code)) for code in args.area]
        campaign = Campaign(
            name=args.name or (entry.name if entry else "Chiến dịch"),
            status=CampaignStatus.DRAFT, area_ids=[a.id for a in areas], roles=roles,
            school_levels=_csv_list(args.levels), languages=_csv_list(args.languages),
            content_ids=content, text_vi=args.text_vi, text_en=args.text_en,
            image_url=args.image, schedule=schedule, starts_at=starts, ends_at=ends,
            runs_done=0, created_at=now)
        session.add(campaign)
        await session.flush()
        reach = await svc.reach(session, campaign, settings.default_language)
        if args.preview_to:
            from storage.directory import normalise_phone

            person = (await session.execute(select(Person).where(
                Person.phone == normalise_phone(args.preview_to)))).scalar_one_or_none()
            if person is None:
                raise CliError(f"no person with phone {args.preview_to!r} to send a preview to")
            await _send_preview(session, campaign, person.id, reach, settings)
        if args.start:
            svc.activate(campaign, now, settings.tz)
        info = {"id": campaign.id, "status": campaign.status, "schedule": schedule,
                "next_run_at": campaign.next_run_at.isoformat() if campaign.next_run_at
                else None, "targeted": reach.targeted, "reachable": reach.reachable,
                "opted_out": reach.opted_out}
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        else:
            print(f"Campaign #{campaign.id} ({campaign.status}): {campaign.name}")
            print(f"Reach: {reach.reachable} of {reach.targeted} targeted "
                  f"({reach.opted_out} opted out); schedule: {schedule}")
            if not args.start:
                print(f"Start it with: safeschool campaign resume {campaign.id}")
        return 0

    return await _with_session(settings, work)


async def _send_preview(session: AsyncSession, campaign: Any, person_id: int, reach: Any,
                        settings: Settings) -> None:
    from bot import campaigns as svc
    from bot.cases import notify
    from bot.messages import Outbound
    from storage.models import Priority

    item = svc.content_for_run(campaign, campaign.runs_done)
    now = _now()

    def compose(t: Any) -> Outbound:
        sample = svc.message_for(campaign, item, t.language)
        text = "\n\n".join([t("campaign.preview", name=campaign.name), sample.text, t(
            "campaign.reach", reachable=reach.reachable, targeted=reach.targeted,
            opted_out=reach.opted_out, schedule=campaign.schedule,
            quiet=settings.quiet_hours)])
        return Outbound(text)

    await notify(session, person_id, compose, key=f"preview:{campaign.id}:{now.isoformat()}",
                 now=now, default_language=settings.default_language, priority=Priority.REPLY)


async def _campaign(session: AsyncSession, campaign_id: int) -> Any:
    from storage.models import Campaign

    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CliError(f"no campaign #{campaign_id}")
    return campaign


async def cmd_campaign_list(args: argparse.Namespace) -> int:
    """List campaigns, newest first."""
    from storage.models import Campaign

    async def work(session: AsyncSession) -> int:
        rows = (await session.execute(select(Campaign).order_by(Campaign.id.desc()))).scalars()
        out = [{"id": c.id, "name": c.name, "status": c.status, "schedule": c.schedule,
                "runs": c.runs_done,
                "next_run_at": c.next_run_at.isoformat() if c.next_run_at else None}
               for c in rows]
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        elif not out:
            print("No campaigns yet.")
        for c in out if not args.json else []:
            print(f"#{c['id']}\t{c['status']}\t{c['runs']} run(s)\tnext {c['next_run_at']}"
                  f"\t{c['schedule']}\t{c['name']}")
        return 0

    return await _with_session(_settings(), work)


async def cmd_campaign_show(args: argparse.Namespace) -> int:
    """Show a campaign and, per run and area, who was reached."""
    from dataclasses import asdict

    from bot.campaigns import run_stats
    from storage.models import CampaignRun

    settings = _settings()

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
        print(f"#{campaign.id} {campaign.name} — {campaign.status}; {campaign.schedule}; "
              f"roles {','.join(campaign.roles)}")
        for run in report["runs"]:
            print(f"  run {run['run']} at {run['scheduled_for']} ({run['content'] or 'custom'},"
                  f" {run['status']})")
            print("    area        targeted  sent  failed  unreachable  opted_out  waiting")
            for code, s in run["areas"].items():
                print(f"    {code:<10} {s['targeted']:>9} {s['sent']:>5} {s['failed']:>7}"
                      f" {s['unreachable']:>12} {s['opted_out']:>10} {s['waiting']:>8}")
        return 0

    return await _with_session(settings, work)


async def cmd_campaign_state(args: argparse.Namespace) -> int:
    """Pause, resume (or start a draft) or cancel a campaign."""
    from bot import campaigns as svc
    from storage.models import CampaignStatus

    settings = _settings()

    async def work(session: AsyncSession) -> int:
        campaign = await _campaign(session, args.id)
        if campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.FINISHED) \
                and args.action != "cancel":
            raise CliError(f"campaign #{campaign.id} is {campaign.status}")
        if args.action == "pause":
            campaign.status = CampaignStatus.PAUSED
            held = await svc.hold(session, campaign.id, release=False)
            print(f"Campaign #{campaign.id} paused; {held} unsent message(s) held.")
        elif args.action == "resume":
            released = await svc.hold(session, campaign.id, release=True)
            svc.activate(campaign, _now(), settings.tz)
            print(f"Campaign #{campaign.id} {campaign.status}; {released} message(s) released.")
        else:
            campaign.status = CampaignStatus.CANCELLED
            campaign.next_run_at = None
            dropped = await svc.drop_unsent(session, campaign.id, _now())
            print(f"Campaign #{campaign.id} cancelled; {dropped} unsent message(s) dropped.")
        return 0

    return await _with_session(settings, work)


def cmd_campaign_calendar(_args: argparse.Namespace) -> Any:
    """List the built-in calendar."""
    from bot.content import calendar

    async def show() -> int:
        for entry in calendar().values():
            print(f"{entry.id}\t{entry.schedule}\t{','.join(entry.roles)}\t{entry.name}")
        return 0

    return show()


# ---- wiring -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Describe every command and flag."""
    parser = argparse.ArgumentParser(prog="safeschool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot (applies pending migrations first)")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db",
                                                                              required=True)
    dbp.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    directory = sub.add_parser("directory", help="areas, schools, officers, liaisons")
    dsub = directory.add_subparsers(dest="directory", required=True)
    imp = dsub.add_parser("import", help="import .xlsx/.csv files (all or nothing)")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.set_defaults(func=cmd_directory_import)
    dsub.add_parser("show", help="print the area tree with counts")\
        .set_defaults(func=cmd_directory_show)

    invite = sub.add_parser("invite", help="invitation codes")
    isub = invite.add_subparsers(dest="invite", required=True)
    create = isub.add_parser("create", help="create one invitation code")
    create.add_argument("--role", required=True, choices=["officer", "liaison", "admin"])
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--area", metavar="CODE")
    scope.add_argument("--school", metavar="CODE")
    create.add_argument("--person", metavar="PHONE", help="bind the code to a directory person")
    create.add_argument("--duty", choices=["primary", "backup", "chief"],
                        help="officer's duty in the area (default primary)")
    create.add_argument("--uses", type=int, default=1)
    create.add_argument("--expires", metavar="DURATION", help="e.g. 12h, 7d, 2w (default 7d)")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=cmd_invite_create)
    export = isub.add_parser("export", help="personal codes for everyone not yet linked")
    export.add_argument("--out", required=True, metavar="FILE.xlsx")
    export.add_argument("--expires", metavar="DURATION")
    export.set_defaults(func=cmd_invite_export)

    esc = sub.add_parser("escalation", help="who is alerted when nobody acknowledges")
    esub = esc.add_subparsers(dest="escalation", required=True)
    show = esub.add_parser("show", help="print the policy that applies to an area")
    show.add_argument("area", metavar="AREA")
    show.set_defaults(func=cmd_escalation_show)
    setp = esub.add_parser("set", help="set an area's policy from a .toml or .json file")
    setp.add_argument("area", metavar="AREA")
    setp.add_argument("file", metavar="FILE")
    setp.set_defaults(func=cmd_escalation_set)

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

    school = sub.add_parser("school", help="schools")
    ssub = school.add_subparsers(dest="school", required=True)
    codes = ssub.add_parser("codes", help="list each school's public parent code")
    codes.add_argument("--json", action="store_true")
    codes.set_defaults(func=cmd_school_codes)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `safeschool` console script."""
    args = build_parser().parse_args(argv)
    if args.command != "run":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(args.func(args))
    except CliError as exc:
        print(f"safeschool: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
