"""`safeschool escalation`: who is alerted when nobody acknowledges a case."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
from bot.services import escalation


async def cmd_escalation_show(args: argparse.Namespace) -> int:
    """Print the policy that applies to an area (JSON, ready to edit and `set` again)."""
    async def work(session: AsyncSession) -> int:
        area = await area_by_code(session, args.area)
        policy, source = await escalation.effective(session, area.id)
        where = say("escalation.default") if source is None else (
            say("escalation.own") if source.id == area.id
            else say("escalation.inherited", code=source.code))
        print(f"# {area.code} {area.name}: {where}", file=sys.stderr)
        print(json.dumps(escalation.to_dict(policy), ensure_ascii=False, indent=2))
        return 0

    return await with_session(settings_or_fail(), work)


async def cmd_escalation_set(args: argparse.Namespace) -> int:
    """Validate a policy file and make it the area's own policy (sub-areas inherit it)."""
    try:
        policy = escalation.load_file(Path(args.file))
    except escalation.PolicyError as exc:
        raise CliError(say("escalation.not_set", problem=exc.text(tr()))) from exc

    async def work(session: AsyncSession) -> int:
        area = await area_by_code(session, args.area)
        await escalation.set_policy(session, area, policy, clock_now())
        data = escalation.to_dict(policy)
        steps = ", ".join(f"{s['after']}: {'+'.join(s['notify'])}"
                          for s in data["urgent"]["steps"])
        print(say("escalation.set", code=area.code, name=area.name, steps=steps))
        return 0

    return await with_session(settings_or_fail(), work)


def register(sub: Any) -> None:
    """Add escalation."""
    esc = sub.add_parser("escalation", help="who is alerted when nobody acknowledges")
    esub = esc.add_subparsers(dest="escalation", required=True)
    show = esub.add_parser("show", help="print the policy that applies to an area")
    show.add_argument("area", metavar="AREA")
    show.set_defaults(func=cmd_escalation_show)
    setp = esub.add_parser("set", help="set an area's policy from a .toml or .json file")
    setp.add_argument("area", metavar="AREA")
    setp.add_argument("file", metavar="FILE")
    setp.set_defaults(func=cmd_escalation_set)
