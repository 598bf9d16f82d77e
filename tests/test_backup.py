"""Backup and restore (#15, part 4): `safeschool backup` while the bot runs, `safeschool
restore` onto an empty database and media folder elsewhere; the case and its attachment read
back the same, the archive holds nothing in clear, and a restore onto a database in use is
refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tarfile
import uuid
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.cli.keys import KEY_SETTINGS
from storage import crypto, db
from storage.models import Incident, IncidentAttachment
from tests.auxil.console import file_case
from tests.auxil.people import LIAISON_HX, link_everyone

SECRET = "Em Lan lớp 6B bị bạo hành ở nhà kho sau trường"
PHOTO = b"\x89PNG\r\n\x1a\n" + b"anh-chup-hien-truong" * 50


async def _cli(*args: str, database_url: str, media: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    env.update(SAFESCHOOL_DATABASE_URL=database_url, SAFESCHOOL_MEDIA_DIR=str(media))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def _new_database(database_url: str, tmp_path: Path) -> tuple[str, str | None]:
    """An empty database of the same kind: (its URL, the PostgreSQL database to drop)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}", None
    name = f"restore_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                  database=url.database)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return url.set(database=name).render_as_string(hide_password=False), name


async def _drop(database_url: str, name: str) -> None:
    url = make_url(database_url)
    admin = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                  database=url.database)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _archive_bytes(path: Path) -> bytes:
    with tarfile.open(path, "r:gz") as archive:
        return b"".join(archive.extractfile(m).read() for m in archive.getmembers()
                        if m.isfile())


async def test_a_backup_made_while_running_restores_elsewhere_whole_and_still_encrypted(
        app, directory, sessions, clock, database_url, tmp_path):
    await link_everyone(sessions, clock)
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX",
                                   description=SECRET)
    media = Path(app.settings.media_dir)
    kept = media / str(case_id) / "1.png"
    await asyncio.to_thread(kept.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(kept.write_bytes, crypto.seal_bytes(PHOTO))
    async with sessions() as session, session.begin():
        session.add(IncidentAttachment(incident_id=case_id, channel="telegram", kind="photo",
                                       ref="file-id-1", source="reporter", stored_path=str(kept),
                                       created_at=clock.now()))

    archive = tmp_path / "backups" / "safeschool.tar.gz"
    code, out, err = await _cli("backup", "--out", str(archive), "--json",
                                database_url=database_url, media=media)
    assert code == 0, err
    made = json.loads(out)
    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    assert made["media_files"] == 1 and made["revision"] == head  # the schema it was made at
    assert made["dialect"] == make_url(database_url).get_backend_name()
    contents = await asyncio.to_thread(_archive_bytes, archive)
    assert SECRET.encode() not in contents and b"anh-chup-hien-truong" not in contents

    target, created = await _new_database(database_url, tmp_path)
    try:
        elsewhere = tmp_path / "restored-media"
        code, out, err = await _cli("restore", str(archive), "--json", database_url=target,
                                    media=elsewhere)
        assert code == 0, err
        engine = db.create_engine(target)
        try:
            async with db.sessionmaker(engine)() as session:
                incident = (await session.execute(
                    select(Incident).where(Incident.ref == ref))).scalar_one()
                assert incident.description == SECRET
                [photo] = incident.attachments
            assert Path(photo.stored_path).is_relative_to(elsewhere)
            assert crypto.read_file(photo.stored_path) == PHOTO
            assert await db.pending_migrations(engine) == []
        finally:
            await engine.dispose()

        # A database in use is never overwritten.
        code, _out, err = await _cli("restore", str(archive), database_url=target,
                                     media=tmp_path / "third")
        assert code == 2 and "không khôi phục được" in err and "not empty" in err
    finally:
        if created is not None:
            await _drop(database_url, created)


async def test_restore_refuses_what_is_not_a_backup(database_url, tmp_path):
    bogus = tmp_path / "not-a-backup.tar.gz"
    await asyncio.to_thread(bogus.write_bytes, b"hello")
    target, created = await _new_database(database_url, tmp_path)
    try:
        code, _out, err = await _cli("restore", str(bogus), database_url=target,
                                     media=tmp_path / "m")
        assert code == 2 and "is not a SafeSchool Link backup" in err
        code, _out, err = await _cli("restore", str(tmp_path / "missing.tar.gz"),
                                     database_url=target, media=tmp_path / "m")
        assert code == 2 and "không tìm thấy tệp sao lưu" in err
    finally:
        if created is not None:
            await _drop(database_url, created)
