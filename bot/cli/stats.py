"""`safeschool stats`: the committee's figures for a period, as text, JSON, Excel or a chart."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import CliError, clock_now, say, settings_or_fail, tr, with_session
from bot.core.i18n import Translator
from bot.core.settings import LANGUAGES
from bot.services import periods, report_files
from bot.services.cases import Actor, CaseService, NoSuchArea

FORMATS = ("text", "json", "xlsx", "png")
BINARY = ("xlsx", "png")


def choose_period(args: argparse.Namespace, cutoff_day: int, today: Any) -> periods.Period:
    """--period, or --from with --to, or the quarter we are in."""
    try:
        if args.period and (args.date_from or args.date_to):
            raise CliError(say("stats.period_or_range"))
        if args.period:
            return periods.parse(args.period, cutoff_day)
        if args.date_from or args.date_to:
            if not (args.date_from and args.date_to):
                raise CliError(say("stats.from_to"))
            return periods.custom(periods.parse_date(args.date_from),
                                  periods.parse_date(args.date_to))
        return periods.containing("quarter", today, cutoff_day)
    except periods.PeriodError as exc:
        raise CliError(exc.text(tr())) from exc


async def cmd_stats(args: argparse.Namespace) -> int:
    """Compute the figures and write them where asked."""
    settings = settings_or_fail()
    now = clock_now()
    period = choose_period(args, settings.report_cutoff_day, now.astimezone(settings.tz).date())
    if args.format in BINARY and args.out is None and sys.stdout.isatty():
        raise CliError(say("stats.needs_out", format=args.format))
    # The figures' words: --language, else the command line's (--lang or the default).
    t = Translator(args.language) if args.language else tr()

    async def work(session: AsyncSession) -> int:
        service = CaseService(session, now=now, tz=settings.tz,
                              default_language=settings.default_language)
        try:
            report = await service.statistics(Actor(None, "cli"), period, args.area)
        except NoSuchArea as exc:
            raise CliError(tr()("invitation.problem.no_area", code=args.area)) from exc
        if args.format == "json":
            data: bytes = (json.dumps(report.to_json(), ensure_ascii=False, indent=2)
                           + "\n").encode()
        elif args.format == "text":
            data = (report_files.text(t, report, settings.tz) + "\n").encode()
        elif args.format == "xlsx":
            data = await asyncio.to_thread(report_files.workbook, t, report,
                                           settings.committee_name, settings.tz)
        else:
            data = await asyncio.to_thread(report_files.chart, t, report)
        if args.out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            try:
                await asyncio.to_thread(Path(args.out).write_bytes, data)
            except OSError as exc:
                raise CliError(say("cannot_write", path=args.out, error=exc.strerror)) from exc
            print(say("stats.wrote", out=args.out, period=period.label, size=f"{len(data):,}"),
                  file=sys.stderr)
        return 0

    return await with_session(settings, work, read_only=True)


def register(sub: Any) -> None:
    """Add stats."""
    stats = sub.add_parser(
        "stats", help="the committee's figures for a period (text, json, xlsx, png)",
        description="Periods follow Decree 09/2019/NĐ-CP (data cut off on the 14th) unless "
                    "SAFESCHOOL_REPORT_CUTOFF_DAY says otherwise. Without a period: the "
                    "quarter we are in, so far.")
    stats.add_argument("--period", metavar="PERIOD",
                       help="2026-Q3 (quarter), 2026-H1 (6 months), 2026 (year), 2026-11 (month)")
    stats.add_argument("--from", dest="date_from", metavar="DATE",
                       help="first day of a custom range (2026-09-15 or 15/09/2026)")
    stats.add_argument("--to", dest="date_to", metavar="DATE", help="last day, included")
    stats.add_argument("--area", metavar="CODE", help="an area and its subtree (default: all)")
    stats.add_argument("--format", choices=FORMATS, default="text")
    stats.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    stats.add_argument("--language", choices=LANGUAGES,
                       help="words of the text, workbook and chart (default: "
                            "SAFESCHOOL_DEFAULT_LANGUAGE)")
    stats.set_defaults(func=cmd_stats)
