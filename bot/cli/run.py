"""`safeschool run` and `safeschool db`: the bot itself, and its database."""

from __future__ import annotations

import argparse
from typing import Any

from bot.app import App, ConfigError, check_settings
from bot.cli.common import (
    CliError,
    database,
    say,
    settings_or_fail,
    tr,
)
from bot.core.channel import FatalChannelError
from bot.core.logs import setup_logging
from bot.core.settings import safe_url
from storage import db
from storage.leader import SecondInstance

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """Read --log-level (any case); argparse turns the error into one sentence and exit 2."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return text.upper()


async def cmd_run(args: argparse.Namespace) -> int:
    """Run the bot until interrupted."""
    settings = settings_or_fail()
    secrets = [s.get_secret_value() for s in (
        settings.telegram_token, settings.telegram_webhook_secret, settings.zalo_token,
        settings.zalo_webhook_secret) if s]
    setup_logging(args.log_level, secrets)
    try:
        check_settings(settings)
    except ConfigError as exc:
        raise CliError(exc.text(tr())) from exc
    app = App(settings)

    def started() -> None:
        if app.web_only:  # the newcomer's case: say where to go, in one line
            print(say("run.web_only", url=app.chat_url), flush=True)

    try:
        await app.run_forever(started)
    except db.DatabaseUnavailable as exc:
        await app.engine.dispose()
        raise CliError(say("database_unavailable", url=safe_url(settings.database_url),
                           error=exc)) from exc
    except FatalChannelError as exc:
        await app.stop()
        raise CliError(str(exc)) from exc
    except SecondInstance as exc:
        await app.engine.dispose()
        raise CliError(say("run.second_instance", database=exc)) from exc
    except OSError as exc:
        await app.stop()
        raise CliError(say("run.cannot_start", error=exc)) from exc
    return 0


async def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    async with database(settings_or_fail()) as engine:
        applied = await db.upgrade(engine)
    print(say("db.applied", count=len(applied)) if applied else say("db.current"))
    return 0


def register(sub: Any) -> None:
    """Add run and db."""
    run = sub.add_parser("run", help="run the bot (applies pending migrations first)")
    run.add_argument("--log-level", default="INFO", type=log_level, metavar="LEVEL",
                     help="DEBUG, INFO (default), WARNING or ERROR")
    run.set_defaults(func=cmd_run)

    dbp = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db",
                                                                              required=True)
    dbp.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)
