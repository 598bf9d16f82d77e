"""`safeschool person` and `safeschool audit`: a person's rights over their data, and who saw
what (bot/services/people.py, bot/services/audit.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import CliError, clock_now, say, settings_or_fail, tr, with_session
from bot.services import audit as audit_log
from bot.services import people, periods
from bot.services.cases import Actor, CaseService
from bot.services.console import audit
from bot.services.directory import PhoneError, normalise_phone
from storage.models import Account, Incident, Person

CHANNELS = ("telegram", "zalo", "web")


def _phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except PhoneError as exc:
        raise CliError(say("not_a_phone", phone=raw)) from exc


async def _person(session: AsyncSession, raw: str) -> Person:
    """The person a phone number names, or a messenger account (telegram:12345, zalo:…):
    parents who joined with a school's code have no phone in the directory."""
    channel, _, external = raw.partition(":")
    if external and channel in CHANNELS:
        person = (await session.execute(select(Person).join(
            Account, Account.person_id == Person.id).where(
            Account.channel == channel, Account.external_id == external.strip())))\
            .scalar_one_or_none()
    else:
        person = (await session.execute(select(Person).where(
            Person.phone == _phone(raw)))).scalar_one_or_none()
    if person is None:
        raise CliError(say("no_such_phone", phone=raw))
    return person


async def cmd_person_export(args: argparse.Namespace) -> int:
    """What the product holds about a person, as JSON (on stdout, or in --out)."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        person = await _person(session, args.phone)
        held = await people.holdings(session, person)
        await audit(session, None, "person_exported", f"person:{person.id}", clock_now(),
                    via="cli")
        text = json.dumps(held, ensure_ascii=False, indent=2) + "\n"
        if args.out is None:
            sys.stdout.write(text)
        else:
            try:
                await asyncio.to_thread(Path(args.out).write_text, text, encoding="utf-8")
            except OSError as exc:
                raise CliError(say("cannot_write", path=args.out, error=exc.strerror)) from exc
            print(say("person.exported", out=args.out), file=sys.stderr)
        return 0

    return await with_session(settings, work)


async def cmd_person_erase(args: argparse.Namespace) -> int:
    """Forget a person: accounts, roles and personal fields go; cases and figures stay."""
    settings = settings_or_fail()

    async def work(session: AsyncSession) -> int:
        person = await _person(session, args.phone)
        now = clock_now()
        service = CaseService(session, now=now, tz=settings.tz,
                              default_language=settings.default_language)
        try:
            done = await people.erase(session, person, service, Actor(None, "cli"), now,
                                      force=args.force)
        except people.StillReporting as exc:
            raise CliError(say("person.still_reporting", refs=", ".join(exc.refs))) from exc
        await audit(session, None, "person_erased", f"person:{person.id}", now, via="cli",
                    **{k: v for k, v in done.as_json().items() if k != "person_id"})
        if args.json:
            print(json.dumps(done.as_json(), ensure_ascii=False))
        else:
            print(say("person.erased", phone=args.phone, accounts=done.accounts, roles=done.roles,
                      messages=done.messages, cases=done.cases_cut))
            if done.rerouted:
                print(say("person.rerouted", refs=", ".join(done.rerouted)))
        return 0

    return await with_session(settings, work)


async def cmd_audit(args: argparse.Namespace) -> int:
    """Who saw or changed what, and when: one case's looks, or one person's."""
    settings = settings_or_fail()
    if bool(args.case) == bool(args.person):
        raise CliError(say("audit.one_of"))
    since = until = None
    try:
        if args.date_from:
            since = audit_log.day_bounds(args.date_from, settings.tz)[0]
        if args.date_to:
            until = audit_log.day_bounds(args.date_to, settings.tz)[1]
    except periods.PeriodError as exc:
        raise CliError(exc.text(tr())) from exc

    async def work(session: AsyncSession) -> int:
        person_id = None
        if args.person:
            person_id = (await _person(session, args.person)).id
        elif (await session.execute(select(Incident.id).where(
                Incident.ref == args.case.strip().upper()))).scalar_one_or_none() is None:
            raise CliError(say("retention.no_case", ref=args.case))
        found = await audit_log.lines(session, ref=args.case, person_id=person_id,
                                      since=since, until=until, limit=args.limit)
        if args.json:
            print(json.dumps([line.as_json() for line in found], ensure_ascii=False,
                             indent=2))
            return 0
        if not found:
            print(say("audit.none"))
        for line in found:
            local = line.at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{local}  {line.person}  {line.via}  {line.action}  {line.subject}")
        return 0

    return await with_session(settings, work, read_only=True)


def register(sub: Any) -> None:
    """Add person and audit."""
    person = sub.add_parser("person", help="a person's data: export it, or erase it")
    psub = person.add_subparsers(dest="person", required=True)
    export = psub.add_parser("export", help="what is held about a person, as JSON")
    export.add_argument("phone", metavar="PHONE",
                        help="a phone number, or a messenger account: telegram:ID, zalo:ID")
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    export.set_defaults(func=cmd_person_export)
    erase = psub.add_parser("erase", help="forget a person (cases and statistics stay, "
                                          "without them)")
    erase.add_argument("phone", metavar="PHONE",
                       help="a phone number, or a messenger account: telegram:ID, zalo:ID")
    erase.add_argument("--force", action="store_true",
                       help="even while they reported an open case by name (the officer can "
                            "no longer reach them)")
    erase.add_argument("--json", action="store_true", help="one JSON object")
    erase.set_defaults(func=cmd_person_erase)
    log = sub.add_parser("audit", help="who saw or changed what, and when")
    log.add_argument("--case", metavar="REF", help="every look at and change of one case")
    log.add_argument("--person", metavar="PHONE", help="everything one person saw or did")
    log.add_argument("--from", dest="date_from", metavar="DATE", help="from this day")
    log.add_argument("--to", dest="date_to", metavar="DATE", help="to this day, included")
    log.add_argument("--limit", type=int, metavar="N", help="only the newest N lines")
    log.add_argument("--json", action="store_true",
                     help='a list of {"at", "person", "person_id", "via", "action", "subject"}')
    log.set_defaults(func=cmd_audit)
