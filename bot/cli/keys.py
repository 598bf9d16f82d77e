"""`safeschool keys`: the data keys that encrypt case data at rest."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot.cli.common import CliError, Progress, database, say, settings_or_fail
from storage import crypto, db, rotation


async def cmd_keys_generate(_args: argparse.Namespace) -> int:
    """Print a new key (put it first in SAFESCHOOL_DATA_KEYS to start using it)."""
    print(crypto.generate_key())
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
    rot = ksub.add_parser("rotate", help="re-encrypt everything under the first key "
                                         "(resumable; safe while the bot runs)")
    rot.add_argument("--batch", type=int, default=rotation.BATCH, help="rows per transaction")
    rot.add_argument("--check", action="store_true",
                     help="only count what is still under another key (exit 1 if any)")
    rot.set_defaults(func=cmd_keys_rotate)
