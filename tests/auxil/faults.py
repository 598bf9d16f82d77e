"""What the fault suite drives: real `safeschool run` processes, reporters, a private PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.cli.keys import KEY_SETTINGS
from storage.models import Account, Incident, Person, Role, RoleAssignment, School
from tests.auxil.fake_telegram import FakeTelegram

# Words that appear only inside reports and children's details: none may reach a log.
SECRET_WORDS = ("Phạm Bảo Ngọc", "vết bầm tím", "0977111222")
REPORTER_BASE = 50_000  # chat ids of the fault suite's own liaisons


def full() -> bool:
    """The heaviest checks run at their full size when SAFESCHOOL_FAULTS_FULL=1."""
    return os.environ.get("SAFESCHOOL_FAULTS_FULL") == "1"


def figure(row: str, value: str) -> None:
    """Print a measured figure (`pytest -s tests/test_faults.py | grep FIGURE` lists them)."""
    print(f"FIGURE {row}: {value}")


def free_port() -> int:
    """Return a loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Bot:
    """One `safeschool run` process writing its log to a file."""

    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """Return everything the process has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    async def stop(self) -> int:
        """SIGTERM, and the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 60)


@dataclass
class Launcher:
    """Starts bot processes with the same settings, each with its own log file."""

    database_url: str
    fake: FakeTelegram
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    bots: list[Bot] = field(default_factory=list)

    def start(self, log_level: str = "INFO", **extra: str) -> Bot:
        """Start `safeschool run` against the fake."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
        env.update({
            "SAFESCHOOL_DATABASE_URL": self.database_url,
            "SAFESCHOOL_TELEGRAM_TOKEN": self.fake.token,
            "SAFESCHOOL_TELEGRAM_API_URL": self.fake.api_url,
            "SAFESCHOOL_TELEGRAM_POLL_TIMEOUT": "1",
            "SAFESCHOOL_TELEGRAM_REQUEST_TIMEOUT": "3",
            "SAFESCHOOL_HTTP_PORT": "0",
            "SAFESCHOOL_MEDIA_DIR": str(self.workdir / "media"),
            # These processes run on the real clock: without this, a campaign queued after
            # 21:00 in Vietnam waits for the morning and the test fails by time of day.
            "SAFESCHOOL_QUIET_HOURS": "00:00-00:00",
            **self.env, **extra,
        })
        log_path = self.workdir / f"bot-{len(self.bots) + 1}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen([sys.executable, "-m", "bot", "run", "--log-level",
                                        log_level], env=env,
                                       cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        bot = Bot(process, log_path)
        self.bots.append(bot)
        return bot

    def logs(self) -> str:
        """Every log line of every process started."""
        return "\n".join(bot.log() for bot in self.bots)

    def close(self) -> None:
        """Make sure no process outlives the test."""
        for bot in self.bots:
            if bot.process.poll() is None:
                bot.kill()


def assert_clean_logs(logs: str) -> None:
    """No traceback caused by input, and no word of any report, anywhere in the logs."""
    forms = {w: (w, json.dumps(w)[1:-1]) for w in SECRET_WORDS}  # as typed, and as JSON
    leaked = [w for w, spelt in forms.items() if any(f in logs for f in spelt)]
    assert not leaked, f"report content in the logs: {leaked}"


async def add_liaisons(sessions: async_sessionmaker, count: int, now: Any,
                       school: str = "THCS-HX") -> list[int]:
    """Register count liaisons of one school, each with a Telegram chat; return the chat ids."""
    chats = [REPORTER_BASE + n for n in range(count)]
    async with sessions() as session, session.begin():
        school_id = (await session.execute(select(School.id).where(School.code == school)))\
            .scalar_one()
        for n, chat in enumerate(chats):
            person = Person(name=f"Giáo viên {n}", created_at=now)
            session.add(person)
            await session.flush()
            session.add(RoleAssignment(person_id=person.id, role=Role.LIAISON,
                                       school_id=school_id, created_at=now))
            session.add(Account(channel="telegram", external_id=str(chat), person_id=person.id,
                                created_at=now, code_failures=0))
    return chats


def urgent_report(fake: FakeTelegram, chat: int) -> list[dict[str, Any]]:
    """Queue what a teacher does for an urgent report: /report, then "yes, a child is in
    danger now" (the alert goes out at this point, before any detail)."""
    return [fake.user_message(chat, "/report"), fake.press(chat, "report:danger:yes")]


def urgent_updates(fake: FakeTelegram, chat: int) -> list[dict[str, Any]]:
    """The same two updates, built but not queued (for webhook deliveries)."""
    first = fake.user_message(chat, "/report")
    second = fake.press(chat, "report:danger:yes")
    fake._updates.remove(first)
    fake._updates.remove(second)
    return [first, second]


def confirmations(fake: FakeTelegram, chat: int) -> list[str]:
    """The "urgent report sent to the police" answers a reporter received."""
    return [t for t in fake.texts(chat) if "Đã báo khẩn cho công an" in t]


async def incidents(sessions: async_sessionmaker) -> list[Incident]:
    """Every incident, oldest first."""
    async with sessions() as session:
        return list((await session.execute(select(Incident).order_by(Incident.id))).scalars())


def lost_reports(fake: FakeTelegram, chats: list[int]) -> list[int]:
    """Reporters who were not told, exactly once, that their urgent report reached the police."""
    return [chat for chat in chats if len(confirmations(fake, chat)) != 1]


def unanswered(fake: FakeTelegram, chats: list[int]) -> list[int]:
    """Reporters who were never told that their urgent report reached the police."""
    return [chat for chat in chats if not confirmations(fake, chat)]


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll a (sync or async) condition until it holds; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (not within {timeout:g}s)")
        await asyncio.sleep(0.02)


# ---- a PostgreSQL cluster of the test's own ---------------------------------------------------

def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    raise RuntimeError(f"{name} not found: install PostgreSQL's server package")


class PgCluster:
    """initdb into a temporary folder and pg_ctl on a free port: restarting it never touches
    the shared server. As root, the server runs as the postgres user (it refuses root)."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="safeschool-pg-"))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        """The asyncpg URL of the cluster's database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def init(self) -> None:
        """Create the cluster and start it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.folder}'\nfsync = off\n"
                       "max_connections = 100\n")
        self.start()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"),
                  "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: clients are disconnected)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """What `pg_ctl restart -m fast` does to the clients: a blink of a second or two."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"),
                  "-m", "fast", "-w", "restart")

    def destroy(self) -> None:
        """Stop the server (if running) and remove its files."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

