"""Clock-driven work on APScheduler; what must happen lives in our tables, not in jobs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.clock import Clock
from storage.models import InboundSeen

_LOGGER = logging.getLogger(__name__)
SEEN_RETENTION = timedelta(days=14)


async def purge_seen_events(sessions: async_sessionmaker, clock: Clock) -> int:
    """Forget processed-event ids older than any messenger would redeliver."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(InboundSeen).where(InboundSeen.at < clock.now() - SEEN_RETENTION))
    return result.rowcount or 0


REPORT_SECONDS = 2.0  # a report asked for in the chat is built within this (plus its build)
PERIOD_MINUTES = 10  # how soon after a period closes its reports are asked for
RETENTION_FIRST = timedelta(minutes=5)  # the first retention run after a start
OUTREACH_SECONDS = 60.0  # how often sent awareness messages are counted (reports add the rest)


def build_scheduler(sessions: async_sessionmaker, clock: Clock, timezone: str,
                    media_tick: Callable[[], Awaitable[object]],
                    case_tick: Callable[[], Awaitable[object]],
                    campaign_tick: Callable[[], Awaitable[object]],
                    tick_seconds: float,
                    report_tick: Callable[[], Awaitable[object]],
                    period_tick: Callable[[], Awaitable[object]],
                    report_files_tick: Callable[[], Awaitable[object]],
                    retention_tick: Callable[[], Awaitable[object]],
                    outreach_tick: Callable[[], Awaitable[object]]) -> AsyncIOScheduler:
    """Create the scheduler: the case clock, the campaign clock, the report clocks, and
    housekeeping.

    Each clock is its own job so queueing a large campaign or building a province's report
    never delays an escalation. The period clock also runs at start, so a period that closed
    while the process was down is reported then.
    """
    scheduler = AsyncIOScheduler(timezone=timezone)
    for name, job in (("case-clock", case_tick), ("campaign-clock", campaign_tick)):
        scheduler.add_job(job, "interval", seconds=tick_seconds, id=name, coalesce=True,
                          max_instances=1, misfire_grace_time=None)
    scheduler.add_job(report_tick, "interval", seconds=REPORT_SECONDS, id="report-clock",
                      coalesce=True, max_instances=1, misfire_grace_time=None)
    scheduler.add_job(period_tick, "interval", minutes=PERIOD_MINUTES, id="period-clock",
                      coalesce=True, max_instances=1, misfire_grace_time=None,
                      next_run_time=clock.now())
    scheduler.add_job(report_files_tick, "interval", hours=1, id="report-files",
                      coalesce=True, max_instances=1, misfire_grace_time=3600)
    scheduler.add_job(outreach_tick, "interval", seconds=OUTREACH_SECONDS, id="outreach",
                      coalesce=True, max_instances=1, misfire_grace_time=None)
    scheduler.add_job(media_tick, "interval", minutes=1, id="keep-remote-media",
                      coalesce=True, max_instances=1, misfire_grace_time=300)
    scheduler.add_job(purge_seen_events, "interval", hours=6, args=[sessions, clock],
                      id="purge-seen-events", coalesce=True, max_instances=1,
                      misfire_grace_time=3600)
    # Daily, and a few minutes after each start (a process restarted more often than daily
    # still removes what is due); a run is idempotent.
    scheduler.add_job(retention_tick, "interval", hours=24, id="retention", coalesce=True,
                      max_instances=1, misfire_grace_time=None,
                      next_run_time=datetime.now(UTC) + RETENTION_FIRST)
    return scheduler
