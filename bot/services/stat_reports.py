"""Statistics reports delivered in the chat: asked for with /stats, or due when a reporting
period closes. A request is a row first (nothing is lost when the process dies); the report
clock builds it outside any chat transaction (figures, chart, workbook), keeps the files
under a random token for the download link, and queues the messages through the outbox.

What each messenger receives: Telegram takes the chart as a photo and the workbook as a
document; Zalo's bots cannot upload files, so Zalo gets the chart by its public URL and a
short-lived download link to the workbook (both served by the app's own HTTP server)."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.channel import profile_of
from bot.core.i18n import Translator
from bot.core.messages import Media, Outbound
from bot.core.outbox import enqueue, preferred_account
from bot.core.settings import Settings
from bot.services import periods, report_files
from bot.services.cases import Actor, CaseService, Refused
from bot.services.codes import random_code
from bot.services.console import audit
from storage.areas import ancestors
from storage.db import upsert_insert
from storage.models import (
    Account,
    Area,
    Person,
    Priority,
    Role,
    RoleAssignment,
    StatReport,
)

_LOGGER = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
BUILD_LEASE = timedelta(minutes=10)  # a province's year builds in seconds; a dead builder's
                                     # report is taken again after this
PERIOD_KINDS = ("quarter", "half", "year")  # what closes and is sent by itself
TOKEN_LENGTH = 24  # about 119 random bits: a link nobody can guess
TOKEN = re.compile(r"^[A-Z0-9]{24}$")
FILES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "png": "image/png"}


def file_name(language: str, period: periods.Period, ext: str) -> str:
    """bao-cao-thong-ke-2026-Q3.xlsx; the chart: bieu-do-2026-Q3.png."""
    label = period.label.replace("..", "_")
    if ext == "png":
        return f"{'bieu-do' if language == 'vi' else 'chart'}-{label}.png"
    return f"{'bao-cao-thong-ke' if language == 'vi' else 'statistics'}-{label}.xlsx"


async def request(session: AsyncSession, *, key: str, person_id: int, account_id: int | None,
                  area_id: int | None, period: periods.Period, now: datetime) -> bool:
    """Store a report to build; False when one with this key exists (never twice)."""
    stmt = upsert_insert(session.get_bind().dialect.name, StatReport).values(
        key=key, person_id=person_id, account_id=account_id, area_id=area_id,
        period_kind=period.kind, period_label=period.label, first_day=period.first,
        last_day=period.last, status="pending", token=random_code(TOKEN_LENGTH),
        attempts=0, created_at=now,
    ).on_conflict_do_nothing(index_elements=["key"])
    result = await session.execute(stmt)
    return bool(result.rowcount)


async def _recipient(session: AsyncSession,
                     row: StatReport) -> tuple[Person | None, Account | None]:
    """Who a report goes to, and on which account: the one it was asked from, else the
    person's preferred one (never a blocked one)."""
    person = await session.get(Person, row.person_id)
    account = await session.get(Account, row.account_id) if row.account_id else None
    if account is None or account.blocked_at is not None:
        account = await preferred_account(session, row.person_id)
    return person, account


def _period_of(row: StatReport) -> periods.Period:
    return periods.Period(row.period_kind, row.period_label, row.first_day, row.last_day)


class Undeliverable(Exception):
    """A report that can never be sent (nobody to send it to, no longer allowed)."""


@dataclass(frozen=True)
class Built:
    """What a built report left on disk, and the words around it."""

    summary: str
    chart: Path
    workbook: Path


class ReportBuilder:
    """Builds pending requests one at a time; any number of processes may run one."""

    def __init__(self, sessions: async_sessionmaker, settings: Settings, now: Any,
                 readers: async_sessionmaker | None = None) -> None:
        self.sessions = sessions
        # The figures are read on a read-only connection: on SQLite the bot's own connection
        # goes on writing (alerts) while a province's year is being read.
        self.readers = readers or sessions
        self.settings = settings
        self.now = now  # a callable: the clock
        self.folder = Path(settings.media_dir) / "reports"

    async def run_pending(self) -> int:
        """Build and queue every pending report; return how many were sent."""
        done = 0
        while (claimed := await self._claim()) is not None:
            try:
                if await self._build_and_queue(claimed):
                    done += 1
            except Undeliverable as exc:
                await self._failed(claimed, str(exc), final=True)
            except Exception as exc:  # one bad report must not stop the others
                _LOGGER.exception("Statistics report %s failed", claimed)
                await self._failed(claimed, type(exc).__name__)
        return done

    async def _claim(self) -> int | None:
        """Take the oldest pending report; one whose builder died (a process killed
        mid-build) is pending again after BUILD_LEASE; one tried too often is given up."""
        while True:
            now = self.now()
            async with self.sessions() as session, session.begin():
                row = (await session.execute(
                    select(StatReport).where(or_(
                        StatReport.status == "pending",
                        and_(StatReport.status == "building",
                             StatReport.claimed_at < now - BUILD_LEASE)))
                    .order_by(StatReport.id).limit(1).with_for_update(skip_locked=True))
                ).scalar_one_or_none()
                if row is None:
                    return None
                if row.attempts < MAX_ATTEMPTS:
                    row.attempts += 1
                    row.status, row.claimed_at = "building", now
                    return row.id
                row.status, row.last_error = "failed", row.last_error or "gave up"

    async def _failed(self, report_id: int, reason: str, *, final: bool = False) -> None:
        """Try again later, or give up and say so: whoever asked is never left waiting."""
        async with self.sessions() as session, session.begin():
            row = await session.get(StatReport, report_id)
            if row is None:
                return
            row.last_error = reason
            if not final and row.attempts < MAX_ATTEMPTS:
                row.status = "pending"
                return
            row.status = "failed"
            person, account = await _recipient(session, row)
            if account is not None and person is not None:
                language = (person.language or account.language
                            or self.settings.default_language)
                t = Translator(language, account.channel)
                await enqueue(session, account, Outbound(t("stats.failed")),
                              key=f"stats:{row.id}:failed", now=self.now(),
                              priority=Priority.NOTICE)

    async def _build_and_queue(self, report_id: int) -> bool:
        settings = self.settings
        now = self.now()
        async with self.readers() as session, session.begin():
            row = await session.get(StatReport, report_id)
            assert row is not None
            person, account = await _recipient(session, row)
            area = await session.get(Area, row.area_id) if row.area_id else None
            if person is None or account is None:
                raise Undeliverable("nobody to send it to")
            language = person.language or account.language or settings.default_language
            t = Translator(language, account.channel)
            service = CaseService(session, now=now, tz=settings.tz,
                                  default_language=settings.default_language)
            try:  # the same door as in the chat: roles may have changed since the request
                report = await service.statistics(Actor(person, account.channel), _period_of(row),
                                                  area.code if area else None)
            except Refused as exc:
                raise Undeliverable("no longer allowed") from exc
            token, period = row.token, _period_of(row)
            account_id, channel = account.id, account.channel
        folder = self.folder / token
        built = await asyncio.to_thread(self._render, t, report, folder, language, period)
        base = settings.public_base
        async with self.sessions() as session, session.begin():
            row = await session.get(StatReport, report_id)
            account = await session.get(Account, account_id)
            assert row is not None and account is not None
            expires = now + timedelta(hours=settings.report_link_hours)
            for n, message in enumerate(self._messages(t, built, channel, base, token, expires)):
                await enqueue(session, account, message, key=f"stats:{row.id}:{n}", now=now,
                              priority=Priority.NOTICE)
            row.status, row.done_at, row.expires_at = "done", now, expires
            # An export of case references: in the audit log like every other look.
            await audit(session, row.person_id, "statistics_sent",
                        f"{period.label} {report.area_code or ''}".strip(), now, via=channel)
        return True

    def _render(self, t: Translator, report: Any, folder: Path, language: str,
                period: periods.Period) -> Built:
        folder.mkdir(parents=True, exist_ok=True)
        chart = folder / file_name(language, period, "png")
        workbook = folder / file_name(language, period, "xlsx")
        chart.write_bytes(report_files.chart(t, report))
        workbook.write_bytes(report_files.workbook(t, report, self.settings.committee_name,
                                                   self.settings.tz))
        return Built(report_files.summary(t, report, self.settings.tz), chart, workbook)

    def _messages(self, t: Translator, built: Built, channel: str, base: str | None,
                  token: str, expires: datetime) -> list[Outbound]:
        messages = [Outbound(built.summary)]
        until = expires.astimezone(self.settings.tz).strftime("%H:%M %d/%m/%Y")
        if profile_of(channel).uploads:
            messages.append(Outbound(t("stats.chart_caption"), media=Media(
                "photo", str(built.chart), channel, str(built.chart))))
            messages.append(Outbound(t("stats.workbook_caption"), media=Media(
                "document", str(built.workbook), channel, str(built.workbook))))
        elif base is None:
            messages.append(Outbound(t("stats.no_public_url")))
        else:
            messages.append(Outbound(t("stats.chart_caption"), media=Media(
                "photo", f"{base}/reports/{token}/{built.chart.name}", channel)))
            messages.append(Outbound(t("stats.workbook_link", until=until,
                                       url=f"{base}/reports/{token}/{built.workbook.name}")))
        return messages

    async def file(self, token: str, name: str) -> tuple[Path, str] | None:
        """The file a download link names, while the link lasts (None: gone or never was)."""
        if not TOKEN.match(token) or "/" in name or name.startswith("."):
            return None
        ext = name.rsplit(".", 1)[-1]
        if ext not in FILES:
            return None
        async with self.sessions() as session:
            row = (await session.execute(select(StatReport).where(
                StatReport.token == token))).scalar_one_or_none()
        if row is None or row.status != "done" or row.expires_at is None or \
                row.expires_at <= self.now():
            return None
        path = self.folder / token / name
        return (path, FILES[ext]) if path.is_file() else None

    async def forget_expired(self) -> int:
        """Delete the files of reports whose links have expired (the figures stay in the
        database; a report can always be built again)."""
        async with self.sessions() as session:
            tokens = list((await session.execute(select(StatReport.token).where(
                StatReport.expires_at < self.now()))).scalars())
        removed = 0
        for token in tokens:
            folder = self.folder / token
            if folder.exists():
                await asyncio.to_thread(shutil.rmtree, folder, True)
                removed += 1
        return removed


async def queue_closed_periods(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Ask for the report of each period that has closed (the last quarter, half and year)
    for every admin of an area, once: a restart never asks twice, and a period that closed
    while the process was down is asked for at the next run. Only admins who held the role
    when the period closed receive it (a new admin is not sent old reports)."""
    today = now.astimezone(settings.tz).date()
    cutoff = settings.report_cutoff_day
    closed = [periods.previous(periods.containing(kind, today, cutoff), cutoff)
              for kind in PERIOD_KINDS]
    admins = (await session.execute(
        select(RoleAssignment).where(RoleAssignment.role == Role.ADMIN,
                                     RoleAssignment.area_id.is_not(None))
        .order_by(RoleAssignment.id))).scalars().all()
    held: dict[int, set[int]] = {}
    for a in admins:
        held.setdefault(a.person_id, set()).add(a.area_id)  # type: ignore[arg-type]
    queued = 0
    for assignment in admins:
        area_id = assignment.area_id
        assert area_id is not None
        # An area inside another of the same admin's areas: its figures are in that report.
        if held[assignment.person_id].intersection((await ancestors(session, area_id))[1:]):
            continue
        for period in closed:
            closed_at = period.bounds(settings.tz)[1]
            if assignment.created_at > closed_at:
                continue
            queued += await request(
                session, key=f"period:{period.label}:{area_id}:{assignment.person_id}",
                person_id=assignment.person_id, account_id=None, area_id=area_id,
                period=period, now=now)
    return queued
