"""`safeschool directory` and `safeschool school`: the areas, schools and people."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import (
    CliError,
    bot_username,
    clock_now,
    report_problems,
    say,
    settings_or_fail,
    with_session,
)
from bot.services.cases import Actor, CaseService
from bot.services.codes import deep_link
from bot.services.console import audit
from bot.services.directory import (
    AreaNode,
    DirectoryError,
    NoSuchSchool,
    PhoneError,
    deactivate,
    directory_tree,
    import_rows,
    normalise_phone,
    public_page_url,
    read_files,
    set_public_page,
)
from storage.models import Area, Person, School


async def cmd_directory_import(args: argparse.Namespace) -> int:
    """Import directory files all-or-nothing."""
    rows, problems = read_files(Path(p) for p in args.files)
    if problems:
        return report_problems(problems)
    print(say("directory.read", rows=len(rows), files=len(args.files)), file=sys.stderr)

    async def work(session: AsyncSession) -> int:
        result = await import_rows(session, rows, clock_now(), progress=lambda stage: print(
            say("directory.stage", stage=say(f"directory.stage.{stage}")), file=sys.stderr,
            flush=True))
        kinds = ("areas", "schools", "people", "officers", "liaisons")
        if args.json:
            print(json.dumps({"rows": len(rows), **{kind: {
                "created": result.created[kind], "updated": result.updated[kind]}
                for kind in kinds}}))
            return 0
        changed = False
        for kind in kinds:
            if result.created[kind] or result.updated[kind]:
                changed = True
                print(say("directory.changed", kind=say(f"directory.kind.{kind}"),
                          new=result.created[kind], updated=result.updated[kind]))
        if not changed:
            print(say("directory.unchanged"))
        return 0

    try:
        return await with_session(settings_or_fail(), work)
    except DirectoryError as exc:
        return report_problems(exc.problems)


async def cmd_directory_deactivate(args: argparse.Namespace) -> int:
    """Someone left: end their officer, admin and liaison roles and reroute their open
    cases; the person, their accounts and every case stay."""
    settings = settings_or_fail()
    try:
        phone = normalise_phone(args.phone)
    except PhoneError as exc:
        raise CliError(say("not_a_phone", phone=args.phone)) from exc

    async def work(session: AsyncSession) -> int:
        person = (await session.execute(select(Person).where(Person.phone == phone)))\
            .scalar_one_or_none()
        if person is None:
            raise CliError(say("no_such_phone", phone=args.phone))
        now = clock_now()
        service = CaseService(session, now=now, tz=settings.tz,
                              default_language=settings.default_language)
        details, released = await deactivate(session, person, service, Actor(None, "cli"))
        await audit(session, None, "person_deactivated", f"person:{person.id}", now,
                    via="cli", roles=details, cases=[i.ref for i in released])
        out = {"person": person.name, "phone": phone, "roles_ended": len(details),
               "cases_rerouted": [i.ref for i in released]}
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        elif not details:
            print(say("deactivate.nothing", who=person.name or phone))
        else:
            rerouted = f" ({', '.join(out['cases_rerouted'])})" if released else ""
            print(say("deactivate.done", who=person.name or phone, roles=len(details),
                      cases=len(released), refs=rerouted))
        return 0

    return await with_session(settings, work)


def _node_json(node: AreaNode) -> dict[str, Any]:
    return {"code": node.area.code, "name": node.area.name, "level": node.area.level,
            "schools": node.schools, "officers": node.officers, "liaisons": node.liaisons,
            "parents": node.parents, "children": [_node_json(c) for c in node.children]}


async def cmd_directory_show(args: argparse.Namespace) -> int:
    """Print the area tree with counts."""
    async def work(session: AsyncSession) -> int:
        roots = await directory_tree(session)
        if args.json:
            print(json.dumps([_node_json(r) for r in roots], ensure_ascii=False))
            return 0
        if not roots:
            print(say("directory.empty"))
            return 0

        def show(node: AreaNode, depth: int) -> None:
            level = f" ({node.area.level})" if node.area.level else ""
            print(f"{'  ' * depth}{node.area.code}  {node.area.name}{level} — " + say(
                "directory.counts", schools=node.schools, officers=node.officers,
                liaisons=node.liaisons, parents=node.parents))
            for child in node.children:
                show(child, depth + 1)

        for root in roots:
            show(root, 0)
        return 0

    return await with_session(settings_or_fail(), work)


async def cmd_school_codes(args: argparse.Namespace) -> int:
    """List each school's public parent-join code."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        username = await bot_username(session, settings)
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

    return await with_session(settings, work)


async def cmd_school_public(args: argparse.Namespace) -> int:
    """Open or close a school's public report page (or say whether it is open)."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        if args.state is None:
            school = (await session.execute(select(School).where(
                School.code == args.school))).scalar_one_or_none()
            if school is None:
                raise CliError(say("school.unknown", code=args.school))
        else:
            try:
                school = await set_public_page(session, args.school, args.state == "on")
            except NoSuchSchool:
                raise CliError(say("school.unknown", code=args.school)) from None
            await audit(session, None, f"public_page_{args.state}", f"school:{school.code}",
                        clock_now(), via="cli")
        url = public_page_url(settings.console_base, school.code)
        if args.json:
            print(json.dumps({"school": school.code, "public_page": school.public_reports,
                              "url": url}, ensure_ascii=False))
        else:
            print(say("school.public.on" if school.public_reports else "school.public.off",
                      school=school.name, url=url))
        return 0

    return await with_session(settings, work)


def register(sub: Any) -> None:
    """Add directory and school."""
    directory = sub.add_parser("directory", help="areas, schools, officers, liaisons")
    dsub = directory.add_subparsers(dest="directory", required=True)
    imp = dsub.add_parser("import", help="import .xlsx/.csv files (all or nothing)")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_directory_import)
    shw = dsub.add_parser("show", help="print the area tree with counts")
    shw.add_argument("--json", action="store_true")
    shw.set_defaults(func=cmd_directory_show)
    off = dsub.add_parser("deactivate", help="someone left: end their roles, reroute their "
                          "open cases (nothing is deleted)")
    off.add_argument("phone", metavar="PHONE")
    off.add_argument("--json", action="store_true")
    off.set_defaults(func=cmd_directory_deactivate)

    school = sub.add_parser("school", help="schools")
    ssub = school.add_subparsers(dest="school", required=True)
    codes = ssub.add_parser("codes", help="list each school's public parent code")
    codes.add_argument("--json", action="store_true")
    codes.set_defaults(func=cmd_school_codes)
    public = ssub.add_parser("public", help="open or close a school's public report page "
                             "(/chat/s/SCHOOL: anyone may report, anonymously)")
    public.add_argument("school", metavar="SCHOOL")
    public.add_argument("state", nargs="?", choices=("on", "off"),
                        help="on or off (without it: say whether it is open)")
    public.add_argument("--json", action="store_true")
    public.set_defaults(func=cmd_school_public)
