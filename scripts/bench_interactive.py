"""Benchmark: interactive handling, ours against a bare python-telegram-bot echo bot.

N distinct users each send /help at once (queued in the loopback fake Bot API before the bot
starts polling). Measured: from the first getUpdates that hands out an update to the N-th
answer. The same for a bare python-telegram-bot Application that answers /help with a fixed
text and stores nothing (run_polling, its default sequential handling). The send rate is
lifted for both (this measures handling, not the Bot API's 30/s; the campaign benchmarks
measure that). Ours stores each update before acknowledging it, runs the dispatcher in a
transaction per update and writes each answer to the outbox first: the ratio says what that
durability costs. Not a test: run it by hand, e.g.

    python scripts/bench_interactive.py --users 2000
    python scripts/bench_interactive.py --users 2000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --reset
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_campaign import reset_schema
from scripts.bench_pace import cpu_seconds
from storage import crypto
from tests.auxil.fake_telegram import FakeTelegram

FIRST_USER = 5_000_000
ECHO_BOT = textwrap.dedent('''
    import sys
    from telegram import Update
    from telegram.ext import Application, CommandHandler

    async def answer(update: Update, _context) -> None:
        await update.effective_message.reply_text("SafeSchool Link: help text")

    app = Application.builder().token(sys.argv[1]).base_url(sys.argv[2]).build()
    app.add_handler(CommandHandler("help", answer))
    app.run_polling(poll_interval=0, timeout=1)
''')


def py_spy() -> str:
    """py-spy from PATH, or beside this Python (a venv that is not activated)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return found


async def measure(fake: FakeTelegram, users: int, command: list[str], env: dict[str, str],
                  workdir: Path, name: str, profile: str | None = None) -> tuple[float, float]:
    """Queue users x /help, start the bot, return answers per second and the bot's CPU
    milliseconds per answer (steadier than the rate on a shared machine); with profile,
    py-spy records the bot (collapsed stacks of CPU samples, per thread) into that file."""
    for n in range(users):
        fake.user_message(FIRST_USER + n, "/help")
    before = fake.sent_total
    log = (workdir / f"{name}.log").open("w")
    bot = subprocess.Popen(command, env=env, cwd=workdir, stdout=log,  # noqa: ASYNC220
                           stderr=subprocess.STDOUT)
    spy = None
    try:
        if profile:
            spy = subprocess.Popen([py_spy(), "record", "--pid", str(bot.pid),  # noqa: ASYNC220
                                    "--format", "raw", "--rate", "250", "--threads",
                                    "--output", profile],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:  # the fake re-checks after every call it answers: no polling here
            await fake.wait_for(lambda: fake.updates_served > 0, 120)
            start, cpu = time.monotonic(), cpu_seconds(bot.pid)
            await fake.wait_for(lambda: fake.sent_total - before >= users, 600)
            elapsed, cpu = time.monotonic() - start, cpu_seconds(bot.pid) - cpu
        except TimeoutError:
            raise SystemExit(f"only {fake.sent_total - before} of {users} answered "
                             f"(bot exit code {bot.poll()}): see {log.name}") from None
        return users / elapsed, cpu * 1000 / users
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:  # never leave the bot running for py-spy
                spy.kill()
        bot.terminate()
        try:
            bot.wait(60)
        except subprocess.TimeoutExpired:
            bot.kill()
        fake.updates_served = 0


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp())
    url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    if args.reset:
        await reset_schema(url)
    fake = FakeTelegram(keep_calls=False)
    await fake.start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SAFESCHOOL_")}
    base["SAFESCHOOL_DATA_KEYS"] = crypto.generate_key()
    base["SAFESCHOOL_RELAY_KEY"] = crypto.generate_key()
    try:
        echo = workdir / "echo_bot.py"
        echo.write_text(ECHO_BOT)
        bare, bare_cpu = await measure(fake, args.users, [sys.executable, str(echo), fake.token,
                                                fake.api_url], base, workdir, "bare")
        ours_env = {**base, "SAFESCHOOL_DATABASE_URL": url,
                    "SAFESCHOOL_TELEGRAM_TOKEN": fake.token,
                    "SAFESCHOOL_TELEGRAM_API_URL": fake.api_url,
                    "SAFESCHOOL_TELEGRAM_POLL_TIMEOUT": "1", "SAFESCHOOL_HTTP_PORT": "0",
                    "SAFESCHOOL_TELEGRAM_RATE_PER_SECOND": "10000",
                    "SAFESCHOOL_OUTBOX_CONCURRENCY": str(args.concurrency)}
        ours, ours_cpu = await measure(fake, args.users, [sys.executable, "-m", "bot", "run",
                                                "--log-level", "WARNING"], ours_env, workdir,
                             "ours", args.profile)
    finally:
        await fake.close()
    print(f"users:                 {args.users:,}, each sending /help once")
    print(f"bare PTB echo bot:     {bare:.0f} answers/s, {bare_cpu:.2f} ms CPU an answer "
          "(nothing stored)")
    print(f"SafeSchool Link:       {ours:.0f} answers/s, {ours_cpu:.2f} ms CPU an answer "
          f"({url.split(':')[0]}; stored first, outbox, worker)")
    print(f"SUMMARY users={args.users} bare={bare:.0f}/s ours={ours:.0f}/s "
          f"ratio={ours / bare:.2f} cpu_ms={ours_cpu:.2f} bare_cpu_ms={bare_cpu:.2f}")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--reset", action="store_true",
                        help="drop and recreate the public schema first (PostgreSQL)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", metavar="FILE",
                        help="record our bot with py-spy into FILE (collapsed stacks)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
