"""Engine, sessions and migrations for SQLite and PostgreSQL alike."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

_LOGGER = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
# A file beside wherever the bot is started: works on a fresh machine with nothing set up.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///safeschool.db"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or opened."""


DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
           "postgres": "postgresql+asyncpg"}


def normalise_url(url: str) -> str:
    """Pick the async driver when an operator writes a plain sqlite:// or postgresql:// URL;
    refuse, in one sentence (ValueError), a URL that cannot be read or a database we do not
    run on."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("cannot read it as a database URL; write e.g. "
                         "sqlite:///safeschool.db or postgresql://user@host/dbname") from None
    driver = DRIVERS.get(parsed.drivername, parsed.drivername)
    if driver not in DRIVERS.values():
        raise ValueError(f"the driver {parsed.drivername!r} is not supported; use sqlite:// "
                         "or postgresql://") from None
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


READER_CACHE_KIB = 64 * 1024  # SQLite page cache of a read-only connection
READER_MMAP_BYTES = 256 * 1024 * 1024
READER_WORK_MEM = "64MB"  # PostgreSQL, per sort or hash of a read-only transaction


def create_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> AsyncEngine:
    """Create an async engine; SQLite gets WAL, foreign keys and a busy timeout.

    A read-only engine is for long reads (statistics): on SQLite it has its own connection
    and begins its transactions deferred, so in WAL mode it reads a snapshot while the
    bot's connection goes on writing (alerts never wait behind a report), with a larger
    page cache and memory-mapped reads; it refuses to write. On PostgreSQL its transactions
    are READ ONLY."""
    url = normalise_url(url)
    is_sqlite = url.startswith("sqlite")
    # Errors must not carry report texts or names into the logs.
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite:
        kwargs.setdefault("connect_args", {"timeout": 30})
        # SQLite takes one writer at a time. With several connections, the others wait in
        # SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between looks: measured, 36
        # answers/s where one connection, handed over in order by the pool, is faster.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 120)
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite:
        # Concurrent writers on one SQLite file (the worker, the dispatcher, the clocks): the
        # driver's implicit BEGIN lets a transaction read first and then fail to upgrade its
        # stale snapshot to a write. Taking the write lock at BEGIN makes writers queue on the
        # busy timeout instead (SQLAlchemy's documented recipe for pysqlite/aiosqlite).
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        if read_only:
            @event.listens_for(engine.sync_engine, "connect")
            def _sqlite_reader(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA query_only=ON")
                cursor.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
                cursor.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
                cursor.close()
    elif read_only:
        engine = engine.execution_options(postgresql_readonly=True)

        @event.listens_for(engine.sync_engine, "begin")
        def _pg_reader(conn: Any) -> None:
            # A province's year groups hundreds of thousands of rows: sort and hash in
            # memory rather than on disk (PostgreSQL's default is 4 MB). And no JIT: the
            # planner's estimates on the area tree's recursive query are far too high, and
            # compiling took 0.4 s of every statistics query (measured), more than the work.
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{READER_WORK_MEM}'")
            conn.exec_driver_sql("SET LOCAL jit = off")
    return engine


def upsert_insert(dialect_name: str, model: Any) -> Any:
    """Return an INSERT for model that supports ON CONFLICT on both SQLite and PostgreSQL."""
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(model)


@functools.cache
def insert_ignoring(dialect_name: str, model: Any, *keys: str) -> Any:
    """An INSERT into model's table that skips a row whose keys exist already, built once per
    dialect; the caller passes the row (or rows) as parameters. The hot paths (every update
    stored, recorded, answered) used to build theirs per row: a fifth of the CPU of handling
    an update went into building statements."""
    return upsert_insert(dialect_name, model.__table__).on_conflict_do_nothing(
        index_elements=list(keys))


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    """Return the session factory used everywhere (objects stay usable after commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    """Build the Alembic configuration from the package, independent of the working dir."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def check_connection(engine: AsyncEngine) -> None:
    """Raise DatabaseUnavailable with the driver's reason if the database cannot be used."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # the drivers raise a zoo of exception types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(reason) from exc


def _upgrade(sync_conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _pending(sync_conn: Connection) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    current = set(MigrationContext.configure(sync_conn).get_current_heads())
    pending = []
    for rev in script.walk_revisions():
        if rev.revision in current:
            break
        pending.append(rev.revision)
    return pending


async def pending_migrations(engine: AsyncEngine) -> list[str]:
    """Return the revisions not yet applied, newest first."""
    async with engine.connect() as conn:
        return await conn.run_sync(_pending)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> list[str]:
    """Apply pending migrations; return what was applied."""
    pending = await pending_migrations(engine)
    if pending:
        _LOGGER.info("Applying %d database migration(s)", len(pending))
        async with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # SQLite changes a column by copying the table and dropping the old one; rows
                # pointing at it (a case's timeline) would fail the drop. Foreign keys are
                # off for the migration (it can only be switched outside a transaction) and
                # checked whole before they are on again.
                await conn.run_sync(_sqlite_pragma, "foreign_keys=OFF")
            try:
                async with conn.begin():
                    await conn.run_sync(_upgrade, revision)
                    if sqlite:
                        broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                        if broken:
                            raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
            finally:
                if sqlite:
                    await conn.run_sync(_sqlite_pragma, "foreign_keys=ON")
    return pending


def _sqlite_pragma(sync_conn: Connection, pragma: str) -> None:
    """Run a PRAGMA on the driver's connection, outside any transaction."""
    cursor = sync_conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


# ---- transient failures ---------------------------------------------------------------------

# SQLSTATE classes and codes that mean "try again": connection trouble (08…), the server
# shutting down or starting (57P01-57P03), serialization failures and deadlocks (40001, 40P01),
# too many connections (53300).
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "53300")
_TRANSIENT_WORDS = ("database is locked", "database table is locked", "connection was closed",
                    "connection is closed", "connection reset", "server closed the connection",
                    "cannot connect now", "the database system is")


# OSErrors about local files are about the code or the disk, not a database blink.
_LOCAL_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                 NotADirectoryError)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_transient(exc: BaseException) -> bool:
    """Tell whether a database error may go away by itself (a blink, a lock, a restart).

    Integrity and programming errors are never transient: retrying them repeats the failure.
    """
    from sqlalchemy import exc as sa_exc

    for link in _chain(exc):
        if isinstance(link, sa_exc.IntegrityError | sa_exc.ProgrammingError):
            return False
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, ConnectionError | TimeoutError) or (
                isinstance(link, OSError) and not isinstance(link, _LOCAL_ERRORS)):
            return True  # refused, reset, unreachable, "Multiple exceptions: … Connect call"
        state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return True
        name = type(link).__name__
        if name in ("ConnectionDoesNotExistError", "InterfaceError", "CannotConnectNowError",
                    "ConnectionFailureError", "PostgresConnectionError"):
            return True
        if isinstance(link, sa_exc.OperationalError | sa_exc.InterfaceError
                      | sa_exc.DisconnectionError):
            text = str(link.orig if isinstance(link, sa_exc.DBAPIError) else link).lower()
            if any(word in text for word in _TRANSIENT_WORDS):
                return True
    return False


async def retry_transient(work: Any, *, attempts: int = 6, first_delay: float = 0.05,
                          max_delay: float = 1.0, what: str = "database work") -> Any:
    """Run ``await work()``; on a transient database error, wait and run it again.

    work must be a fresh transaction each time (it is re-run from the start). The last error
    is raised when every attempt failed, so the caller can defer instead of answering.
    """
    import asyncio

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            _LOGGER.warning("%s failed (%s); retrying in %.2fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")
