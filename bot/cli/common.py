"""What every command shares: settings, the database, one-sentence errors."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.channels.telegram import ask_username
from bot.core.clock import Clock
from bot.core.settings import Settings, safe_url
from bot.services.codes import USERNAME_KEY, telegram_username
from storage import db
from storage.models import Area, KeyValue

EXIT_USAGE = 2
NO_LINK = "(bot username unknown: set SAFESCHOOL_TELEGRAM_BOT_USERNAME or start the bot once)"


async def bot_username(session: AsyncSession, settings: Settings) -> str | None:
    """The bot's username for deep links: configured, learnt by `safeschool run`, or asked
    of Telegram now when a token is set (and kept), so links work on the very first day."""
    known = await telegram_username(session, settings.telegram_bot_username)
    if known or settings.telegram_token is None:
        return known
    asked = await ask_username(settings)
    if asked:
        row = await session.get(KeyValue, USERNAME_KEY)
        if row is None:
            session.add(KeyValue(key=USERNAME_KEY, value=asked))
        else:
            row.value = asked
    return asked


class CliError(Exception):
    """An error to print as one sentence, exiting with code 2."""


def settings_or_fail() -> Settings:
    """Read the settings, or say in one sentence which one is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "SAFESCHOOL_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CliError(f"{field} is invalid: {message}") from exc


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Open the database, or say in one sentence why it cannot be opened."""
    engine = db.create_engine(settings.database_url)
    try:
        try:
            await db.check_connection(engine)
        except db.DatabaseUnavailable as exc:
            raise CliError(f"cannot open the database {safe_url(settings.database_url)}: "
                           f"{exc}") from exc
        yield engine
    finally:
        await engine.dispose()


async def with_session(settings: Settings,
                        work: Callable[[AsyncSession], Awaitable[int]], *,
                        read_only: bool = False) -> int:
    """Open the database (migrating it if needed) and run work in one transaction (a
    read-only one, which never blocks a running bot on SQLite, when asked)."""
    async with database(settings) as engine:
        await db.upgrade(engine)
        if not read_only:
            async with db.sessionmaker(engine)() as session, session.begin():
                return await work(session)
        reader = db.create_engine(settings.database_url, read_only=True)
        try:
            async with db.sessionmaker(reader)() as session, session.begin():
                return await work(session)
        finally:
            await reader.dispose()


def clock_now() -> Any:
    """The time now (UTC)."""
    return Clock().now()


def report_problems(problems: list[Any]) -> int:
    """Print each problem of an import that was refused, then what it means."""
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"Nothing was imported: {len(problems)} problem(s) to fix.", file=sys.stderr)
    return 1


async def area_by_code(session: AsyncSession, code: str) -> Any:
    """The area with this code, or a one-sentence error."""
    area = (await session.execute(select(Area).where(Area.code == code))).scalar_one_or_none()
    if area is None:
        raise CliError(f"no area with code {code!r} in the directory")
    return area
