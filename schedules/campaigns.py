"""The campaign clock: open due runs, then queue their audience batch by batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.clock import Clock
from bot.core.settings import Settings
from bot.services.campaigns import queue_batch, start_due_runs
from bot.services.timing import QuietHours
from storage.areas import subtree
from storage.models import Campaign, CampaignRun, CampaignStatus

_LOGGER = logging.getLogger(__name__)
BREATHER = 0.05  # seconds between batches of 1,000
ANALYZE_EVERY = 20  # batches


async def _refresh_statistics(sessions: async_sessionmaker) -> None:
    """After a bulk load, tell PostgreSQL's planner the queue is big: with stale statistics it
    sorts the whole pending queue for every claim instead of walking the claim index."""
    async with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("ANALYZE outbox"))


async def campaign_tick(sessions: async_sessionmaker, clock: Clock, settings: Settings,
                        quiet: QuietHours, wake: Callable[[], None] = lambda: None) -> int:
    """Open due runs and queue every running run to the end; return how many were queued.

    Each batch is its own transaction (rows and cursor together), and the worker is woken
    after each, so sending starts while the rest of the audience is still being queued.
    """
    now = clock.now()
    async with sessions() as session, session.begin():
        opened = await start_due_runs(session, now, settings.tz)
    if opened:
        _LOGGER.info("Opened %d campaign run(s)", len(opened))
    queued = 0
    batches = 0
    areas: dict[int, list[int]] = {}
    while True:
        async with sessions() as session, session.begin():
            row = (await session.execute(
                select(CampaignRun, Campaign).join(Campaign, Campaign.id == CampaignRun.campaign_id)
                .where(CampaignRun.status == "running",
                       Campaign.status.in_([CampaignStatus.ACTIVE, CampaignStatus.FINISHED]))
                .order_by(CampaignRun.id).limit(1)
                .with_for_update(skip_locked=True, of=CampaignRun))).first()
            if row is None:
                return queued
            run, campaign = row
            if campaign.id not in areas:  # the tree is read once per tick, not per batch
                areas[campaign.id] = await subtree(session, campaign.area_ids)
            result = await queue_batch(session, run, campaign, now=clock.now(), quiet=quiet,
                                       default_language=settings.default_language,
                                       areas=areas[campaign.id])
            queued += result.queued
            if result.done:
                run.status = "done"
                run.finished_at = clock.now()
        batches += 1
        if batches % ANALYZE_EVERY == 1:
            await _refresh_statistics(sessions)
        wake()
        # Let alerts and replies take the database between batches: SQLite's lock is not
        # fair, and an immediate next batch would keep interactive writers waiting.
        await asyncio.sleep(BREATHER)
