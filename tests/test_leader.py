"""Several instances, one database (#15, part 1): three `safeschool run` processes on
PostgreSQL elect one leader (it alone polls Telegram and runs the clocks); the leader killed
with SIGKILL mid-way, another leads within SAFESCHOOL_LEADER_TIMEOUT and every report is
still answered once and alerted. On SQLite a second process refuses to start."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bot.cli.keys import KEY_SETTINGS
from bot.services.directory import import_rows, read_files
from storage import db
from storage.models import Outbox
from tests.auxil.console import file_case
from tests.auxil.directory import write_directory
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.faults import (
    Launcher,
    add_liaisons,
    confirmations,
    incidents,
    lost_reports,
    urgent_report,
    wait_until,
)
from tests.auxil.helpers import count
from tests.auxil.people import CHIEF_QH, LIAISON_HX, OFFICER_HX, Chat, link_everyone

PG = os.environ.get("SAFESCHOOL_LEADER_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
LEADS = "This instance leads"
TIMEOUT = 6.0  # SAFESCHOOL_LEADER_TIMEOUT for the test


async def _admin(sql: str) -> None:
    url = make_url(PG)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                 database=url.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_three_instances_elect_one_leader_and_fail_over_after_sigkill(
        fake_telegram: FakeTelegram, clock, tmp_path: Path) -> None:
    name = f"leader_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    launcher = Launcher(url, fake_telegram, tmp_path,
                        env={"SAFESCHOOL_LEADER_TIMEOUT": str(TIMEOUT)})
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        rows, problems = read_files(write_directory(tmp_path))
        assert not problems
        async with sessions() as session, session.begin():
            await import_rows(session, rows, clock.now())
        await link_everyone(sessions, clock)
        chats = await add_liaisons(sessions, 16, clock.now())

        bots = [launcher.start() for _ in range(3)]

        def leaders() -> list[int]:
            return [n for n, bot in enumerate(bots) if LEADS in bot.log()]

        await wait_until(lambda: len(leaders()) >= 1, 60, "nobody leads")
        [first] = leaders()  # one, and only one
        half = len(chats) // 2
        for chat in chats[:half]:
            urgent_report(fake_telegram, chat)
        await wait_until(lambda: not lost_reports(fake_telegram, chats[:half]), 60,
                         "the leader did not answer the first reports")

        bots[first].kill()
        killed = time.monotonic()
        await wait_until(lambda: len(leaders()) >= 2, TIMEOUT + 10, "nobody took over")
        took = time.monotonic() - killed
        assert took < TIMEOUT, f"a new leader after {took:.1f} s"
        assert len(leaders()) == 2  # the dead one and exactly one successor

        for chat in chats[half:]:
            urgent_report(fake_telegram, chat)
        await wait_until(lambda: not lost_reports(fake_telegram, chats), 60,
                         "reports after the failover were not answered once each")
        refs = [i.ref for i in await incidents(sessions)]
        assert len(refs) == len(chats)
        officer = fake_telegram.texts(OFFICER_HX)
        await wait_until(lambda: all(any(r in t for t in fake_telegram.texts(OFFICER_HX))
                                     for r in refs), 30, "an alert never reached the officer")
        officer = fake_telegram.texts(OFFICER_HX)
        twice = [r for r in refs if sum(r in t and "KHẨN CẤP" in t for t in officer) > 2]
        assert not twice, f"alerts sent more than twice: {twice}"
        assert all(len(confirmations(fake_telegram, c)) == 1 for c in chats)
        for n, bot in enumerate(bots):
            if n != first:
                assert await bot.stop() == 0
    finally:
        launcher.close()
        await engine.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_second_process_on_one_sqlite_database_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    env.update(SAFESCHOOL_DATABASE_URL=f"sqlite:///{tmp_path / 'one.db'}",
               SAFESCHOOL_HTTP_PORT="0", SAFESCHOOL_MEDIA_DIR=str(tmp_path / "media"))
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert first.stdout is not None
    try:
        while b"/chat/" not in (line := await asyncio.wait_for(first.stdout.readline(), 60)) \
                or b"Web chat at" in line:
            assert line, "the first process ended"
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2
        assert err.decode().strip().startswith(
            "safeschool: một tiến trình SafeSchool Link khác đang chạy trên cơ sở dữ liệu "
            "SQLite"), err.decode()
        assert first.returncode is None  # the first one runs on, untouched
    finally:
        first.terminate()
        assert await asyncio.wait_for(first.wait(), 30) == 0


async def test_the_clock_jobs_run_on_the_leader_only(app, directory, sessions, clock,
                                                     fake_telegram) -> None:
    await link_everyone(sessions, clock)
    await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    chief = Chat(fake_telegram, CHIEF_QH)
    seen = chief.mark()
    case_clock = app.scheduler.get_job("case-clock").func
    app.leadership._set(False)  # another instance leads now
    clock.advance(timedelta(minutes=11))  # past the urgent policy's step to the chief
    assert await case_clock() is None
    assert await count(sessions, Outbox, Outbox.chat_id == str(CHIEF_QH)) == 0
    app.leadership._set(True)
    done = await case_clock()
    assert done and any(done.values())
    [told] = await chief.since(seen)
    assert "CHƯA AI TIẾP NHẬN" in told
