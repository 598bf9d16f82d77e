"""Backups: the database and the media folder in one archive, restored onto an empty database.

The archive is a gzipped tar: `manifest.json` (what, when, which schema revision), the
database (SQLite: a copy made with SQLite's online backup API, consistent while the bot runs;
PostgreSQL: `pg_dump --format=custom`, a consistent snapshot too), and `media/` (attachments,
kept encrypted as they are on disk). Nothing is decrypted on the way: an archive is as
unreadable without the data keys as the database is, so the keys are backed up apart (the
env file), never inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db
from storage.media import LOCAL_PREFIX

FORMAT = "safeschool-backup"
VERSION = 1
SQLITE_FILE = "database.sqlite"
PG_FILE = "database.pgdump"


class BackupError(Exception):
    """A backup or restore that cannot be done; str() says why in one sentence."""


@dataclass
class Manifest:
    """What an archive holds."""

    created_at: str
    dialect: str
    revision: str | None
    media_files: int
    media_dir: str = "media"  # as the database's file paths name it
    format: str = FORMAT
    version: int = VERSION

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sqlite_path(url: str) -> Path:
    database = make_url(db.normalise_url(url)).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _libpq_url(url: str) -> str:
    """The URL pg_dump and pg_restore understand (no SQLAlchemy driver name)."""
    return make_url(db.normalise_url(url)).set(drivername="postgresql") \
        .render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} was not found: install the PostgreSQL client "
                          "(apt-get install postgresql-client)")
    return found


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        has = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
        if not has:
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version")))\
            .scalar_one_or_none()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def _media_files(media_dir: Path) -> list[Path]:
    if not media_dir.is_dir():
        return []
    return sorted(p for p in media_dir.rglob("*") if p.is_file() and not p.name.endswith(".part"))


async def backup(engine: AsyncEngine, url: str, media_dir: Path, out: Path,
                 progress: Callable[[str], None] = lambda _stage: None) -> Manifest:
    """Write the archive to out (atomically: a partial archive never has out's name)."""
    dialect = engine.dialect.name
    revision = await _revision(engine)
    files = await asyncio.to_thread(_media_files, media_dir)
    manifest = Manifest(datetime.now(UTC).isoformat(), dialect, revision, len(files),
                        str(media_dir))
    await asyncio.to_thread(_write_archive, url, media_dir, files, out, manifest, progress)
    return manifest


def _write_archive(url: str, media_dir: Path, files: list[Path], out: Path,
                   manifest: Manifest, progress: Callable[[str], None]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, partial_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        with tempfile.TemporaryDirectory() as work, \
                tarfile.open(partial, "w:gz") as archive:
            progress("database")
            if manifest.dialect == "sqlite":
                copy = Path(work) / SQLITE_FILE
                _sqlite_copy(_sqlite_path(url), copy)
                archive.add(copy, SQLITE_FILE)
            else:
                dump = Path(work) / PG_FILE
                _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-acl",
                      "--file", str(dump), _libpq_url(url)], "pg_dump")
                archive.add(dump, PG_FILE)
            progress("media")
            for path in files:
                archive.add(path, "media/" + path.relative_to(media_dir).as_posix())
            _add_bytes(archive, "manifest.json",
                       json.dumps(manifest.as_json(), ensure_ascii=False, indent=2).encode())
        os.chmod(partial, 0o600)  # the archive is as private as the database
        partial.replace(out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while the bot goes on writing."""
    if not source.exists():
        raise BackupError(f"the database file {source} does not exist")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BackupError(f"{what} failed: {reason}")


def read_manifest(archive_path: Path) -> Manifest:
    """The archive's manifest (BackupError when it is not one of ours)."""
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            member = archive.extractfile("manifest.json")
            data = json.loads(member.read()) if member is not None else {}
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{archive_path} is not a SafeSchool Link backup ({exc})") from exc
    if data.get("format") != FORMAT:
        raise BackupError(f"{archive_path} is not a SafeSchool Link backup")
    if data.get("version") != VERSION:
        raise BackupError(f"{archive_path} is a backup of format version {data.get('version')}"
                          f"; this version reads {VERSION}")
    return Manifest(**{k: data[k] for k in ("created_at", "dialect", "revision",
                                             "media_files", "media_dir", "format", "version")})


def _known_revision(revision: str | None) -> None:
    script = ScriptDirectory.from_config(db.alembic_config())
    if revision is not None and script.get_revision(revision) is None:
        raise BackupError(f"the backup's database is at revision {revision}, which this "
                          "version does not know: restore it with a newer SafeSchool Link")


async def _empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return not names


async def restore(engine: AsyncEngine, url: str, media_dir: Path, archive_path: Path,
                  progress: Callable[[str], None] = lambda _stage: None) -> Manifest:
    """Restore an archive onto an empty database and an empty media folder, then bring the
    schema up to this version's (the archive may be older); return its manifest."""
    manifest = await asyncio.to_thread(read_manifest, archive_path)
    _known_revision(manifest.revision)
    if manifest.dialect != engine.dialect.name:
        raise BackupError(f"the backup is of a {manifest.dialect} database; "
                          f"SAFESCHOOL_DATABASE_URL is {engine.dialect.name}")
    if not await _empty(engine):
        raise BackupError("the database is not empty: restore onto a new one")
    await asyncio.to_thread(_media_empty, media_dir)
    if manifest.dialect == "sqlite":
        await engine.dispose()  # no connection may hold the file while it is replaced
    await asyncio.to_thread(_unpack, url, media_dir, archive_path, manifest, progress)
    progress("migrations")
    await db.upgrade(engine)
    if str(media_dir) != manifest.media_dir:
        await _moved_media(engine, manifest.media_dir, str(media_dir))
    return manifest


def _media_empty(media_dir: Path) -> None:
    if media_dir.exists() and any(media_dir.iterdir()):
        raise BackupError(f"the media folder {media_dir} is not empty: restore into a new one")


def _unpack(url: str, media_dir: Path, archive_path: Path, manifest: Manifest,
            progress: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as work, tarfile.open(archive_path, "r:gz") as archive:
        progress("database")
        name = SQLITE_FILE if manifest.dialect == "sqlite" else PG_FILE
        archive.extract(name, work, filter="data")
        if manifest.dialect == "sqlite":
            target = _sqlite_path(url)
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm"):  # an empty database's leftovers
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{target}{suffix}").unlink()
            shutil.copyfile(Path(work) / name, target)
        else:
            _run([_pg_tool("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                  "--dbname", _libpq_url(url), str(Path(work) / name)], "pg_restore")
        progress("media")
        media_dir.mkdir(parents=True, exist_ok=True)
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith("media/"):
                archive.extract(member, work, filter="data")
                destination = media_dir / Path(member.name).relative_to("media")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(Path(work) / member.name, destination)


async def _moved_media(engine: AsyncEngine, old: str, new: str) -> None:
    """The files now live under another folder: the attachments' paths follow them."""
    async with engine.begin() as conn:
        rows = (await conn.execute(text(
            "SELECT id, ref, stored_path FROM incident_attachments "
            "WHERE stored_path IS NOT NULL"))).all()
        for row_id, ref, stored in rows:
            moved = _under(stored, old, new)
            if moved is None:
                continue
            local = ref.startswith(LOCAL_PREFIX) and _under(ref[len(LOCAL_PREFIX):], old, new)
            await conn.execute(text(
                "UPDATE incident_attachments SET stored_path = :path, ref = :ref WHERE id = :id"),
                {"path": moved, "ref": LOCAL_PREFIX + local if local else ref, "id": row_id})


def _under(path: str, old: str, new: str) -> str | None:
    """path moved from the folder old to the folder new (None when it was not under old)."""
    try:
        return str(Path(new) / Path(path).relative_to(old))
    except ValueError:
        return None
