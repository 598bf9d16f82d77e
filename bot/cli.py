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
