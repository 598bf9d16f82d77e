"""`safeschool backup` and `safeschool restore`: the database and the media folder, together."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.cli.common import CliError, database, say, settings_or_fail
from storage.backup import BackupError, Manifest, backup, restore


def _stage(stage: str) -> None:
    print(say(f"backup.stage.{stage}"), file=sys.stderr, flush=True)


def _report(args: argparse.Namespace, manifest: Manifest, key: str, path: Path) -> None:
    if args.json:
        print(json.dumps({"file": str(path), **manifest.as_json()}, ensure_ascii=False))
    else:
        print(say(key, file=path, files=manifest.media_files, dialect=manifest.dialect,
                  revision=manifest.revision or "—", created=manifest.created_at))


async def _archive(args: argparse.Namespace, work: Any, path: Path, failed: str,
                   done: str) -> int:
    """Open the database, run backup or restore on path, say how it went."""
    settings = settings_or_fail()
    async with database(settings) as engine:
        try:
            manifest = await work(engine, settings.database_url, Path(settings.media_dir),
                                  path, _stage)
        except BackupError as exc:
            raise CliError(say(failed, error=exc)) from exc
    _report(args, manifest, done, path)
    return 0


async def cmd_backup(args: argparse.Namespace) -> int:
    """Write the archive."""
    return await _archive(args, backup, Path(args.out), "backup.failed", "backup.done")


async def cmd_restore(args: argparse.Namespace) -> int:
    """Restore an archive onto an empty database and media folder."""
    archive = Path(args.file)
    if not await asyncio.to_thread(archive.is_file):
        raise CliError(say("backup.no_file", file=archive))
    return await _archive(args, restore, archive, "backup.restore_failed", "backup.restored")


def register(sub: Any) -> None:
    """Add backup and restore."""
    out = sub.add_parser("backup", help="the database and the media folder in one archive "
                         "(consistent while the bot runs; the data stays encrypted)")
    out.add_argument("--out", required=True, metavar="FILE", help="the archive to write "
                     "(.tar.gz)")
    out.add_argument("--json", action="store_true")
    out.set_defaults(func=cmd_backup)
    back = sub.add_parser("restore", help="restore an archive onto an empty database and "
                          "media folder (then migrate it to this version)")
    back.add_argument("file", metavar="FILE")
    back.add_argument("--json", action="store_true")
    back.set_defaults(func=cmd_restore)
