"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.clock import Clock
from bot.services.invitations import create_invitation
from storage.models import Account, School


async def invite(sessions: async_sessionmaker, clock: Clock, role: str, *,
                 expires: timedelta = timedelta(days=7), **kwargs: Any) -> str:
    """Create an invitation and return its code."""
    async with sessions() as session, session.begin():
        invitation = await create_invitation(session, role=role, now=clock.now(),
                                             expires_in=expires, **kwargs)
        return invitation.code


async def parent_code(sessions: async_sessionmaker, school: str) -> str:
    """Return a school's public parent code."""
    async with sessions() as session:
        return (await session.execute(
            select(School.parent_code).where(School.code == school))).scalar_one()


async def account(sessions: async_sessionmaker, chat_id: int) -> Account | None:
    """Return the Telegram account of chat_id with its person and roles loaded."""
    async with sessions() as session:
        return (await session.execute(select(Account).where(
            Account.channel == "telegram", Account.external_id == str(chat_id))
        )).scalar_one_or_none()


async def count(sessions: async_sessionmaker, model: Any, *where: Any) -> int:
    """Count rows of model matching where."""
    async with sessions() as session:
        return (await session.execute(
            select(func.count()).select_from(model).where(*where))).scalar_one()


POLL_INTERVAL = 0.01


async def eventually(condition: Any, timeout: float = 10.0) -> None:
    """Poll a condition (a plain or an async function) until it holds; fail with a clear
    message at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def holds() -> bool:
        result = condition()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if loop.time() > deadline:
            raise AssertionError(f"condition {condition.__name__} not met within {timeout}s")
        await asyncio.sleep(POLL_INTERVAL)
