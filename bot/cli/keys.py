"""`safeschool keys`: the data keys that encrypt case data at rest."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bot.cli.common import CliError, Progress, database, say, settings_or_fail
from storage import crypto, db, rotation


async def cmd_keys_generate(_args: argparse.Namespace) -> int:
    """Print a new key (put it first in SAFESCHOOL_DATA_KEYS to start using it)."""
    print(crypto.generate_key())
    return 0


KEY_SETTINGS = ("SAFESCHOOL_DATA_KEYS", "SAFESCHOOL_RELAY_KEY")


def add_missing_keys(path: Path) -> list[str]:
    """Append a new key for each key setting neither the file nor the environment has; the
    names written (the file is created readable by its owner alone)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.split("=", 1)[0].strip() for line in text.splitlines()
               if "=" in line and line.split("=", 1)[1].strip()}
    missing = [name for name in KEY_SETTINGS if name not in present and not os.environ.get(name)]
    if missing:
        lines = "".join(f"{name}={crypto.generate_key()}\n" for name in missing)
        if text and not text.endswith("\n"):
            lines = "\n" + lines
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(lines)
    return missing


async def cmd_keys_init(args: argparse.Namespace) -> int:
    """Write the keys a fresh installation lacks into .env (never replaces one)."""
    path = Path(args.env_file)
    written = add_missing_keys(path)
    if written:
        print(say("keys.init_written", names=", ".join(written), file=path))
    else:
        print(say("keys.init_present", file=path))
    return 0


async def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt everything under the first key, in batches, resumable, beside the bot."""
    settings = settings_or_fail()
    if crypto.keyring().current is None:
        raise CliError(say("key.missing"))
    async with database(settings) as engine:
        await db.upgrade(engine)
        left = await rotation.remaining(engine)
        if args.check:
            print(say("keys.remaining", count=left.total, key=crypto.keyring().current))
            return 0 if left.total == 0 else 1
        progress = Progress(say("keys.progress"), left.total)
        done = await rotation.rotate(engine, batch=args.batch, progress=progress.update)
        progress.close()
    print(say("keys.rotated", count=done, key=crypto.keyring().current))
    if len(crypto.keyring().keys) > 1:
        print(say("keys.old_can_go"), file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add keys."""
    keys = sub.add_parser("keys", help="data keys: encryption of case data at rest")
    ksub = keys.add_subparsers(dest="keys", required=True)
    ksub.add_parser("generate", help="print a new key").set_defaults(func=cmd_keys_generate)
    init = ksub.add_parser("init", help="write the keys a new installation lacks "
                                        "(SAFESCHOOL_DATA_KEYS, SAFESCHOOL_RELAY_KEY) into .env")
    init.add_argument("--env-file", default=".env", help="the file to add them to")
    init.set_defaults(func=cmd_keys_init)
    rot = ksub.add_parser("rotate", help="re-encrypt everything under the first key "
                                         "(resumable; safe while the bot runs)")
    rot.add_argument("--batch", type=int, default=rotation.BATCH, help="rows per transaction")
    rot.add_argument("--check", action="store_true",
                     help="only count what is still under another key (exit 1 if any)")
    rot.set_defaults(func=cmd_keys_rotate)
