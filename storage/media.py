"""Keeping our own copy of files that arrive as URLs (Zalo's CDN links may expire)."""

from __future__ import annotations

import logging
import mimetypes
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage import crypto
from storage.models import IncidentAttachment

_LOGGER = logging.getLogger(__name__)
MAX_BYTES = 20 * 1024 * 1024
MAX_ATTEMPTS = 3
ALLOWED_TYPES = ("image/", "audio/", "video/", "application/pdf", "application/octet-stream")
# An attachment's ref that names our own (encrypted) copy already: the web chat's uploads.
LOCAL_PREFIX = "file:"
UPLOADS = "uploads"  # the console's directory uploads waiting to be applied or cancelled
UPLOAD_HOURS = 24  # an upload nobody applied or cancelled is deleted after this

# A messenger that keeps files behind its own ids (Telegram's file_id) gives a download URL
# for one; the URL may hold the bot's token, so it is never logged.
Resolver = Callable[[str], Awaitable[str]]


class FetchError(Exception):
    """A file could not be fetched or was not acceptable."""


def local_path(ref: str) -> str | None:
    """The kept file an attachment's ref names, if it names one of ours (else None)."""
    return ref[len(LOCAL_PREFIX):] if ref.startswith(LOCAL_PREFIX) else None


async def _download(http: aiohttp.ClientSession, url: str, target: Path) -> None:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status}")
        kind = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        if not kind.startswith(ALLOWED_TYPES):
            raise FetchError(f"refused content type {kind}")
        data = bytearray()  # in memory (at most 20 MB): the plain bytes never touch the disk
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > MAX_BYTES:
                raise FetchError("larger than 20 MB")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(crypto.seal_bytes(bytes(data)))
    os.replace(partial, target)


async def keep_remote_media(sessions: async_sessionmaker, media_dir: Path,
                            batch: int = 20,
                            resolvers: Mapping[str, Resolver] | None = None) -> int:
    """Keep our own copy of attachments known only by a URL (Zalo's CDN) or by a messenger's
    file id (with that messenger's resolver), so the console can show them and an officer on
    another messenger can receive them; return how many were kept this round."""
    resolvers = resolvers or {}
    async with sessions() as session, session.begin():
        rows = (await session.execute(
            select(IncidentAttachment)
            .where(or_(IncidentAttachment.ref.like("http%"),
                       IncidentAttachment.channel.in_(list(resolvers))),
                   IncidentAttachment.stored_path.is_(None),
                   IncidentAttachment.fetch_attempts < MAX_ATTEMPTS)
            .order_by(IncidentAttachment.id).limit(batch)
            .with_for_update(skip_locked=True))).scalars().all()
        todo = [(a.id, a.incident_id, a.channel, a.ref, a.mime_type) for a in rows]
        for attachment in rows:
            attachment.fetch_attempts += 1  # counted first: a crash mid-download still counts
    kept = 0
    async with aiohttp.ClientSession() as http:
        for attachment_id, incident_id, channel, ref, mime in todo:
            ext = mimetypes.guess_extension(mime or "") or ""
            target = media_dir / str(incident_id) / f"{attachment_id}{ext}"
            try:
                url = ref if ref.startswith("http") else await resolvers[channel](ref)
                await _download(http, url, target)
            except FetchError as exc:
                _LOGGER.warning("Could not keep attachment %s: %s", attachment_id, exc)
                continue
            except Exception as exc:  # the messenger's or the network's; the URL stays out
                _LOGGER.warning("Could not keep attachment %s: %s", attachment_id,
                                type(exc).__name__)
                continue
            async with sessions() as session, session.begin():
                attachment = await session.get(IncidentAttachment, attachment_id)
                if attachment is not None:
                    attachment.stored_path = str(target)
                    kept += 1
    return kept


def forget_old_uploads(media_dir: Path, *, hours: float = UPLOAD_HOURS,
                       now: float | None = None) -> int:
    """Delete console uploads older than `hours` that nobody applied or cancelled (they hold
    people's names and phone numbers); return how many went."""
    folder = media_dir / UPLOADS
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - hours * 3600
    gone = 0
    for upload in folder.iterdir():
        try:
            if upload.is_dir() and upload.stat().st_mtime < cutoff:
                shutil.rmtree(upload)
                gone += 1
        except OSError as exc:
            _LOGGER.warning("Could not delete an old upload: %s", type(exc).__name__)
    return gone
