"""Signing in to the web console without passwords, its sessions, and the audit of changes
outside cases.

`/web` in the chat gives an officer, chief or admin a one-time link (random, single use,
short-lived, bound to that person). Opening it starts a browser session with idle and
absolute timeouts. Only hashes of the link and session tokens are stored: a copied database
opens no console. Every form carries the session's CSRF token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent, ConsoleLink, ConsoleSession, Person, Role

CONSOLE_ROLES = (Role.OFFICER, Role.ADMIN)


def digest(token: str) -> str:
    """The stored form of a token (SHA-256 hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def may_use_console(person: Person | None) -> bool:
    """Officers (chiefs included) and committee admins have a console; parents and school
    liaisons use the chat."""
    return person is not None and any(r.role in CONSOLE_ROLES for r in person.roles)


async def issue_link(session: AsyncSession, person: Person, now: datetime,
                     minutes: float) -> str:
    """Return a new sign-in token for this person (its hash is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(ConsoleLink(token_hash=digest(token), person_id=person.id, created_at=now,
                            expires_at=now + timedelta(minutes=minutes)))
    return token


async def link_person(session: AsyncSession, token: str, now: datetime) -> Person | None:
    """Who a sign-in link belongs to while it is unused and fresh (without using it)."""
    link = (await session.execute(select(ConsoleLink).where(
        ConsoleLink.token_hash == digest(token)))).scalar_one_or_none()
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    person = await session.get(Person, link.person_id)
    return person if may_use_console(person) else None


@dataclass(frozen=True)
class Started:
    """A new browser session: the cookie's value (never stored) and the row."""

    token: str
    row: ConsoleSession


async def redeem(session: AsyncSession, token: str, now: datetime) -> Started | None:
    """Use a sign-in link once and start a session; None for an unknown, used or expired
    link (or a person who no longer has a console role)."""
    person = await link_person(session, token, now)
    if person is None:
        return None
    used = await session.execute(
        update(ConsoleLink).where(ConsoleLink.token_hash == digest(token),
                                  ConsoleLink.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    if used.rowcount != 1:  # another tab used it a moment ago
        return None
    cookie = secrets.token_urlsafe(32)
    row = ConsoleSession(token_hash=digest(cookie), csrf=secrets.token_urlsafe(24),
                         person_id=person.id, created_at=now, last_seen_at=now)
    session.add(row)
    await session.flush()
    await audit(session, person.id, "signed_in", None, now)
    return Started(cookie, row)


async def current(session: AsyncSession, token: str | None, now: datetime, *,
                  idle_minutes: float, max_hours: float) -> ConsoleSession | None:
    """The live session for a cookie, its idle clock restarted; None when there is none,
    it was signed out, it has been idle too long or is older than the absolute limit, or
    its person lost every console role."""
    if not token:
        return None
    row = (await session.execute(select(ConsoleSession).where(
        ConsoleSession.token_hash == digest(token)))).scalar_one_or_none()
    if row is None or row.ended_at is not None:
        return None
    if now - row.last_seen_at > timedelta(minutes=idle_minutes) or \
            now - row.created_at > timedelta(hours=max_hours):
        row.ended_at = now
        return None
    if not may_use_console(row.person):
        row.ended_at = now
        return None
    row.last_seen_at = now
    return row


def csrf_ok(row: ConsoleSession, given: str | None) -> bool:
    """Whether a form's token is this session's (compared in constant time)."""
    return bool(given) and hmac.compare_digest(row.csrf, given or "")


async def sign_out(session: AsyncSession, row: ConsoleSession, now: datetime, *,
                   everywhere: bool = False) -> int:
    """End this session, or every session of its person; return how many ended."""
    stmt = update(ConsoleSession).where(ConsoleSession.ended_at.is_(None)).values(ended_at=now)
    stmt = stmt.where(ConsoleSession.person_id == row.person_id) if everywhere else \
        stmt.where(ConsoleSession.id == row.id)
    ended = await session.execute(stmt.execution_options(synchronize_session=False))
    await audit(session, row.person_id, "signed_out_everywhere" if everywhere else "signed_out",
                None, now)
    return int(ended.rowcount or 0)


async def audit(session: AsyncSession, person_id: int | None, action: str,
                subject: str | None, at: datetime, *, via: str = "console",
                **data: Any) -> None:
    """Record a change outside a case (directory, invitations, policy, campaign, sign-in)."""
    session.add(AuditEvent(at=at, person_id=person_id, via=via, action=action,
                           subject=subject, data=dict(data)))
