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
    clock_now,
    report_problems,
    settings_or_fail,
    with_session,
)
from bot.services.codes import deep_link, telegram_username
from bot.services.directory import AreaNode, DirectoryError, directory_tree, import_rows, read_files
from storage.models import Area, School


async def cmd_directory_import(args: argparse.Namespace) -> int:
    """Import directory files all-or-nothing."""
    rows, problems = read_files(Path(p) for p in args.files)
    if problems:
        return report_problems(problems)
    print(f"Read {len(rows)} row(s) from {len(args.files)} file(s); checking…", file=sys.stderr)

    async def work(session: AsyncSession) -> int:
        result = await import_rows(session, rows, clock_now())
        for kind in ("areas", "schools", "people", "officers", "liaisons"):
            if result.created[kind] or result.updated[kind]:
                print(f"{kind}: {result.created[kind]} new, {result.updated[kind]} updated")
        return 0

    try:
        return await with_session(settings_or_fail(), work)
    except DirectoryError as exc:
        return report_problems(exc.problems)


async def cmd_directory_show(_args: argparse.Namespace) -> int:
    """Print the area tree with counts."""
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

    return await with_session(settings_or_fail(), work)


async def cmd_school_codes(args: argparse.Namespace) -> int:
    """List each school's public parent-join code."""
    settings = settings_or_fail()

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

    return await with_session(settings, work)


def register(sub: Any) -> None:
    """Add directory and school."""
    directory = sub.add_parser("directory", help="areas, schools, officers, liaisons")
    dsub = directory.add_subparsers(dest="directory", required=True)
    imp = dsub.add_parser("import", help="import .xlsx/.csv files (all or nothing)")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.set_defaults(func=cmd_directory_import)
    dsub.add_parser("show", help="print the area tree with counts")\
        .set_defaults(func=cmd_directory_show)

    school = sub.add_parser("school", help="schools")
    ssub = school.add_subparsers(dest="school", required=True)
    codes = ssub.add_parser("codes", help="list each school's public parent code")
    codes.add_argument("--json", action="store_true")
    codes.set_defaults(func=cmd_school_codes)
