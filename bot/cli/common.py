"""What every command shares: settings, the database, one-sentence errors."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.app import use_data_keys
from bot.channels.telegram import ask_username
from bot.core.clock import Clock
from bot.core.i18n import Translator
from bot.core.settings import LANGUAGES, Settings, safe_url
from bot.services.codes import USERNAME_KEY, telegram_username
from storage import db
from storage.crypto import DataKeyError
from storage.models import Area, KeyValue

EXIT_USAGE = 2


class _Language:
    """The language the command line speaks: --lang, else SAFESCHOOL_DEFAULT_LANGUAGE,
    else Vietnamese (a district office reads Vietnamese)."""

    t = Translator("vi")


def choose_language(asked: str | None) -> str:
    """Settle the command line's language for this run; return it."""
    language = asked or os.environ.get("SAFESCHOOL_DEFAULT_LANGUAGE", "vi").strip().lower()
    _Language.t = Translator(language if language in LANGUAGES else "vi")
    return _Language.t.language


def tr() -> Translator:
    """The command line's translator (for catalogue texts shared with the chat)."""
    return _Language.t


def say(key: str, **values: object) -> str:
    """A command-line text (`cli.KEY`) in the command line's language."""
    return _Language.t(f"cli.{key}", **values)


def no_link() -> str:
    """What stands in for a deep link while the bot's username is unknown."""
    return say("no_link")


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


class Progress:
    """A counter on stderr for work that takes seconds: rewritten in place on a terminal,
    a line at each tenth in a log (so a cron job's output stays short)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self._shown = -1

    def update(self, done: int) -> None:
        """Show that done of total are done (only when it reads differently)."""
        if self.total <= 0:
            return
        mark = done if self.tty else done * 10 // self.total
        if mark == self._shown or (self.tty and done % 100 and done != self.total):
            return
        self._shown = mark
        text = say("progress", label=self.label, done=done, total=self.total)
        print(f"\r{text}" if self.tty else text, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the counter's line."""
        if self.tty and self._shown >= 0:
            print(file=sys.stderr)


class CliError(Exception):
    """An error to print as one sentence, exiting with code 2."""


def settings_or_fail() -> Settings:
    """Read the settings, or say in one sentence which one is wrong."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "SAFESCHOOL_" + str(first["loc"][0]).upper() if first["loc"] else "?"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CliError(say("setting_invalid", field=field, message=message)) from exc
    try:
        use_data_keys(settings)
    except DataKeyError as exc:
        raise CliError(key_problem(exc)) from exc
    return settings


def key_problem(exc: DataKeyError) -> str:
    """A data-key problem as one sentence in the command line's language."""
    return say(f"key.{exc.key}", **exc.values)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Open the database, or say in one sentence why it cannot be opened."""
    engine = db.create_engine(settings.database_url)
    try:
        try:
            await db.check_connection(engine)
        except db.DatabaseUnavailable as exc:
            raise CliError(say("database_unavailable", url=safe_url(settings.database_url),
                               error=exc)) from exc
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
    """Print each problem of an import that was refused, where it is and what is wrong, in
    the command line's language; then what it means."""
    t = tr()
    for problem in problems:
        # English keeps the compact file:row of compilers; Vietnamese names sheet and row.
        where = problem.where if t.language == "en" else problem.place(t)
        print(say("problem", where=where, problem=problem.text(t)), file=sys.stderr)
    print(say("nothing_imported", count=len(problems)), file=sys.stderr)
    return 1


async def area_by_code(session: AsyncSession, code: str) -> Any:
    """The area with this code, or a one-sentence error."""
    area = (await session.execute(select(Area).where(Area.code == code))).scalar_one_or_none()
    if area is None:
        raise CliError(tr()("invitation.problem.no_area", code=code))
    return area
