"""`safeschool retention`: what is kept only as long as it is needed (bot/services/retention.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import CliError, clock_now, database, say, settings_or_fail, with_session
from bot.services import retention
from bot.services.cases import Actor, CaseService, NoSuchCase
from storage import db


def _print(plan: retention.Plan, as_json: bool, *, done: bool) -> None:
    if as_json:
        print(json.dumps(plan.as_json(), ensure_ascii=False, indent=2))
        return
    print(say("retention.done" if done else "retention.plan", messages=plan.messages,
              updates=plan.updates, drafts=plan.drafts, cases=len(plan.cases),
              files=plan.files))
    if plan.cases:
        print(say("retention.cases", refs=", ".join(plan.cases)))
    if plan.held:
        print(say("retention.held", refs=", ".join(plan.held)))


async def cmd_retention_show(args: argparse.Namespace) -> int:
    """Preview what the next run removes (nothing changes)."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        plan = await retention.plan(session, retention.Policy.of(settings), clock_now())
        _print(plan, args.json, done=False)
        return 0

    return await with_session(settings, work, read_only=True)


async def cmd_retention_run(args: argparse.Namespace) -> int:
    """Remove what is due now (the bot does this once a day by itself)."""
    settings = settings_or_fail()
    async with database(settings) as engine:
        await db.upgrade(engine)
        done = await retention.run(db.sessionmaker(engine), retention.Policy.of(settings),
                                   clock_now(), Path(settings.media_dir))
    _print(done, args.json, done=True)
    return 0


async def cmd_retention_hold(args: argparse.Namespace) -> int:
    """Put a case under legal hold (kept whole past retention), or release it."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        service = CaseService(session, now=clock_now(), tz=settings.tz,
                              default_language=settings.default_language)
        try:
            incident = await service.legal_hold(Actor(None, "cli"), args.ref, not args.release)
        except NoSuchCase as exc:
            raise CliError(say("retention.no_case", ref=args.ref)) from exc
        print(say("retention.hold_on" if incident.legal_hold else "retention.hold_off",
                  ref=incident.ref))
        return 0

    return await with_session(settings, work)


def register(sub: Any) -> None:
    """Add retention."""
    ret = sub.add_parser("retention", help="how long data is kept: preview, run, legal hold")
    rsub = ret.add_subparsers(dest="retention", required=True)
    show = rsub.add_parser("show", help="what the next run will remove (changes nothing)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=cmd_retention_show)
    run = rsub.add_parser("run", help="remove what is due now (the bot does it daily)")
    run.add_argument("--json", action="store_true", help="one JSON object")
    run.set_defaults(func=cmd_retention_run)
    hold = rsub.add_parser("hold", help="keep a case whole past retention (legal hold)")
    hold.add_argument("ref", help="the case's reference, e.g. HX-26-K7M3P")
    hold.add_argument("--release", action="store_true", help="lift the hold")
    hold.set_defaults(func=cmd_retention_hold)
