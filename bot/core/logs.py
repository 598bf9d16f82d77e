"""Logging set-up that never prints a token or secret."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

# Exceptions from these packages describe connections, SQL (with its parameters hidden) or
# the Bot API's answer: useful to an operator and free of what people wrote. Every other
# exception's message (a ValueError, a KeyError, a UnicodeEncodeError…) may quote a report,
# so only its type is logged.
_MESSAGES_KEPT = ("aiohttp", "httpx", "httpcore", "telegram", "bot.channels")
# Database errors about the connection, never about a value (a DataError may quote one).
_DB_KEPT = ("OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError",
            "ConnectionDoesNotExistError", "CannotConnectNowError", "PostgresConnectionError",
            "ConnectionFailureError", "AdminShutdownError", "TooManyConnectionsError")
# Loggers that print raw updates, request bodies or statement parameters at DEBUG: never
# below WARNING.
QUIET_LOGGERS = ("httpx", "httpcore", "telegram", "apscheduler", "aiohttp", "alembic",
                 "asyncio", "aiosqlite", "asyncpg", "sqlalchemy")


def describe(exc: BaseException) -> str:
    """Name an exception; keep its message only when it cannot carry a person's words."""
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")
    if kind.__module__.startswith(_MESSAGES_KEPT) or isinstance(exc, OSError) \
            or (kind.__module__.startswith(("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite"))
                and kind.__name__ in _DB_KEPT):
        return f"{name}: {exc}"
    return f"{name} (message withheld: it may quote what a person sent)"


class ContentFreeFormatter(logging.Formatter):
    """Formats tracebacks with their frames and exception types, not their messages."""

    def formatException(self, ei: object) -> str:  # logging's own name for it
        exc = ei[1] if isinstance(ei, tuple) else None
        if exc is None:
            return ""
        chain: list[BaseException] = []
        while exc is not None and exc not in chain and len(chain) < 6:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        lines: list[str] = []
        for n, link in enumerate(reversed(chain)):
            if n:
                lines.append("\nDuring the handling of the above, another exception occurred:\n")
            lines.append("Traceback (most recent call last):")
            lines.extend(line.rstrip("\n") for line in
                         traceback.format_list(traceback.extract_tb(link.__traceback__)))
            lines.append(describe(link))
        return "\n".join(lines)


class RedactSecrets(logging.Filter):
    """Replace every known secret in a log record by '***'."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            text = ContentFreeFormatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.exc_text = text
        return True


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """Log to stderr; quieten HTTP clients, whose request lines carry the bot token."""
    handler = logging.StreamHandler()
    handler.setFormatter(ContentFreeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET_LOGGERS:  # whatever level the operator asked for
        logging.getLogger(noisy).setLevel(logging.WARNING)
