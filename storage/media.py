"""Keeping our own copy of files that arrive as URLs (Zalo's CDN links may expire)."""

from __future__ import annotations

import logging
import mimetypes
import os
from pathlib import Path

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage.models import IncidentAttachment

_LOGGER = logging.getLogger(__name__)
MAX_BYTES = 20 * 1024 * 1024
MAX_ATTEMPTS = 3
ALLOWED_TYPES = ("image/", "audio/", "video/", "application/pdf", "application/octet-stream")


class FetchError(Exception):
    """A file could not be fetched or was not acceptable."""


async def _download(http: aiohttp.ClientSession, url: str, target: Path) -> None:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        if resp.status != 200:
            raise FetchError(f"HTTP {resp.status}")
        kind = resp.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        if not kind.startswith(ALLOWED_TYPES):
            raise FetchError(f"refused content type {kind}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        size = 0
        with partial.open("wb") as out:
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BYTES:
                    out.close()
                    partial.unlink(missing_ok=True)
                    raise FetchError("larger than 20 MB")
                out.write(chunk)
        os.replace(partial, target)


async def keep_remote_media(sessions: async_sessionmaker, media_dir: Path,
                            batch: int = 20) -> int:
    """Download attachments known only by URL; return how many were kept this round."""
    async with sessions() as session, session.begin():
        rows = (await session.execute(
            select(IncidentAttachment)
            .where(IncidentAttachment.ref.like("http%"),
                   IncidentAttachment.stored_path.is_(None),
                   IncidentAttachment.fetch_attempts < MAX_ATTEMPTS)
            .order_by(IncidentAttachment.id).limit(batch)
            .with_for_update(skip_locked=True))).scalars().all()
        todo = [(a.id, a.incident_id, a.ref, a.mime_type) for a in rows]
        for attachment in rows:
            attachment.fetch_attempts += 1  # counted first: a crash mid-download still counts
    kept = 0
    async with aiohttp.ClientSession() as http:
        for attachment_id, incident_id, url, mime in todo:
            ext = mimetypes.guess_extension(mime or "") or ""
            target = media_dir / str(incident_id) / f"{attachment_id}{ext}"
            try:
                await _download(http, url, target)
            except (FetchError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                _LOGGER.warning("Could not keep attachment %s: %s", attachment_id, exc)
                continue
            async with sessions() as session, session.begin():
                attachment = await session.get(IncidentAttachment, attachment_id)
                if attachment is not None:
                    attachment.stored_path = str(target)
                    kept += 1
    return kept
