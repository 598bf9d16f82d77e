"""Fixtures: a fresh database per test (SQLite, or PostgreSQL when asked), fakes, the app."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.settings import Settings
from bot.services.directory import import_rows, read_files
from storage import crypto, db
from storage.models import Base
from tests.auxil.directory import write_directory
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.fake_zalo import FakeZalo

# CI sets this to run the whole suite on PostgreSQL as well.
PG_URL = os.environ.get("SAFESCHOOL_TEST_DATABASE_URL")

# Case data is encrypted at rest in every test, as in production: one key for the session,
# in the environment so that the command line and subprocesses use it too.
TEST_DATA_KEY = crypto.generate_key()
os.environ["SAFESCHOOL_DATA_KEYS"] = TEST_DATA_KEY
crypto.configure([TEST_DATA_KEY])
# The relay key (the anonymous reporter's link) is a separate one.
TEST_RELAY_KEY = crypto.generate_key()
os.environ["SAFESCHOOL_RELAY_KEY"] = TEST_RELAY_KEY
crypto.configure_relay(TEST_RELAY_KEY)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """Migrate once: a SQLite template file to copy, or the PostgreSQL test database."""
    import asyncio

    async def migrate(url: str) -> None:
        engine = db.create_engine(url)
        await db.upgrade(engine)
        await engine.dispose()

    if PG_URL:
        async def reset() -> None:
            engine = db.create_engine(PG_URL)
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
            await engine.dispose()

        asyncio.run(reset())
        asyncio.run(migrate(PG_URL))
        return None
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
async def database_url(_template: Path | None, tmp_path: Path) -> str:
    """Return the URL of an empty, migrated database for this test."""
    if PG_URL:
        engine = db.create_engine(PG_URL)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()
        return PG_URL
    assert _template is not None
    path = tmp_path / "test.db"
    shutil.copy(_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database."""
    eng = db.create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker:
    """A session factory on the test database."""
    return db.sessionmaker(engine)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
async def directory(sessions: async_sessionmaker, clock: FakeClock, tmp_path: Path) -> None:
    """Import the standard test directory."""
    rows, problems = read_files(write_directory(tmp_path))
    assert not problems
    async with sessions() as session, session.begin():
        await import_rows(session, rows, clock.now())


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A running loopback fake of the Telegram Bot API."""
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def fake_zalo() -> AsyncIterator[FakeZalo]:
    """A running loopback fake of the Zalo Bot API."""
    fake = FakeZalo()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def settings(database_url: str, fake_telegram: FakeTelegram, fake_zalo: FakeZalo,
             tmp_path: Path) -> Settings:
    """Settings that point the app at the fakes, the test database and a media folder of
    the test's own."""
    return make_settings(database_url, fake_telegram, zalo=fake_zalo,
                         media_dir=tmp_path / "media")


def make_settings(database_url: str, fake: FakeTelegram, zalo: FakeZalo | None = None,
                  **overrides: object) -> Settings:
    """Build test settings (never reading the developer's .env)."""
    values: dict[str, object] = {
        "database_url": database_url,
        "telegram_token": fake.token,
        "telegram_api_url": fake.api_url,
        "telegram_poll_timeout": 1.0,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "telegram_chat_burst": 50,
        "outbox_concurrency": 4,
    }
    if zalo is not None:
        values.update(zalo_token=zalo.token, zalo_api_url=zalo.api_url, zalo_poll_timeout=1.0,
                      zalo_chat_burst=50, zalo_rate_per_second=100)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def app(settings: Settings, clock: FakeClock) -> AsyncIterator[App]:
    """The whole application, started against the fakes."""
    application = App(settings, clock)
    clock.on_advance(application.worker.wake)
    await application.start()
    yield application
    await application.stop()
