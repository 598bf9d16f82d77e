"""`safeschool invite`: invitation codes, one at a time or for everyone not yet linked."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import (
    CliError,
    Progress,
    bot_username,
    clock_now,
    no_link,
    say,
    settings_or_fail,
    tr,
    with_session,
)
from bot.services.codes import deep_link
from bot.services.directory import PhoneError
from bot.services.invitations import (
    InvitationError,
    create_invitation,
    parse_duration,
    personal_invitations,
)


async def cmd_invite_create(args: argparse.Namespace) -> int:
    """Create an invitation code and print it with its deep link."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        expires_in = (parse_expiry(args.expires) if args.expires
                      else timedelta(days=settings.invite_default_expiry_days))
        try:
            invitation = await create_invitation(
                session, role=args.role, now=clock_now(), expires_in=expires_in,
                area_code=args.area, school_code=args.school, person_phone=args.person,
                duty=args.duty, uses=args.uses)
        except InvitationError as exc:
            raise CliError(exc.text(tr())) from exc
        except PhoneError as exc:
            raise CliError(say("not_a_phone", phone=args.person)) from exc
        username = await bot_username(session, settings)
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
            t = tr()
            duty = f" ({t(f'duty.{invitation.duty}')})" if invitation.duty else ""
            print(say("invite.code", code=invitation.code))
            print(say("invite.link", link=link or no_link()))
            print(say("invite.role", role=t(f"role.{invitation.role}"), duty=duty,
                      scope=info["scope_name"], code=info["scope"]))
            print(say("invite.uses", uses=invitation.max_uses, expires=info["expires_at"]))
        return 0

    return await with_session(settings, work)


async def cmd_invite_export(args: argparse.Namespace) -> int:
    """Create personal codes for every directory person without an account; write a workbook
    (and, with --json, print what it holds)."""
    settings = settings_or_fail()
    out = Path(args.out)
    if out.suffix.lower() != ".xlsx":
        raise CliError(say("invite.xlsx_only"))

    async def work(session: AsyncSession) -> int:
        now = clock_now()
        expires_in = (parse_expiry(args.expires) if args.expires
                      else timedelta(days=settings.invite_default_expiry_days))
        username = await bot_username(session, settings)
        found = await personal_invitations(session, now, expires_in)
        book = Workbook()
        sheet = book.active
        sheet.title = "invitations"
        columns = ["name", "phone", "role", "duty", "scope_code", "scope_name", "code",
                   "link", "expires_at"]
        sheet.append([say(f"invite.column.{c}") for c in columns])  # a person reads these
        t = tr()
        listed = []
        progress = Progress(say("invite.progress"), len(found))
        for done, (person, role, invitation) in enumerate(found, start=1):
            scope = role.school or role.area
            row = [person.name, person.phone, role.role, role.duty or "",
                   scope.code if scope else "", scope.name if scope else "",
                   invitation.code, deep_link(username, invitation.code) or "",
                   invitation.expires_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")]
            listed.append(dict(zip(columns, row, strict=True)))  # JSON: the stable names
            row[2:4] = [t(f"role.{role.role}"), t(f"duty.{role.duty}") if role.duty else ""]
            sheet.append(row)
            progress.update(done)
        progress.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            book.save(out)
        except OSError as exc:
            raise CliError(say("cannot_write", path=out, error=exc.strerror)) from exc
        if args.json:
            print(json.dumps({"file": str(out), "count": len(listed), "invitations": listed},
                             ensure_ascii=False))
        else:
            print(say("invite.wrote", count=len(listed), out=out))
        return 0

    return await with_session(settings, work)


def parse_expiry(text: str) -> Any:
    """Parse --expires for the CLI, as one sentence on error."""
    try:
        return parse_duration(text)
    except InvitationError as exc:
        raise CliError(exc.text(tr())) from exc


def register(sub: Any) -> None:
    """Add invite."""
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
    export.add_argument("--json", action="store_true",
                        help="also print {file, count, invitations: [...]} as JSON")
    export.set_defaults(func=cmd_invite_export)
