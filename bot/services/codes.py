"""Codes people type: invitation and parent codes, case references. Random, unambiguous."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Invitation, KeyValue, School

# No 0/O, 1/I/L: codes are read aloud and typed on phones.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10  # 31**10 ≈ 8e14 possibilities: brute force is hopeless behind the rate limit
PARENT_CODE_LENGTH = 8


def random_code(length: int = CODE_LENGTH) -> str:
    """Return a random code from the unambiguous alphabet."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise_code(text: str) -> str:
    """Uppercase a typed code and drop spaces and dashes people add while copying it."""
    return re.sub(r"[\s\-_.]", "", text).upper()


CODE_LENGTHS = (PARENT_CODE_LENGTH, CODE_LENGTH)  # parents' and link codes; personal ones
_TYPED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-_.]*$")


def looks_like_code(text: str) -> bool:
    """Whether text could be one of our codes, typed loosely (case, spaces, dashes): the code
    alphabet (no I, L, O, 0, 1) and a code's length. "hello there" or "xin chào" is not, so a
    greeting is never counted as a wrong code."""
    code = normalise_code(text)
    return bool(_TYPED.match(text.strip())) and len(code) in CODE_LENGTHS \
        and all(ch in ALPHABET for ch in code)


async def unused_code(session: AsyncSession, length: int = CODE_LENGTH) -> str:
    """Return a fresh code unused by any invitation or school."""
    while True:
        code = random_code(length)
        clash = await session.execute(
            select(Invitation.id).where(Invitation.code == code).union_all(
                select(School.id).where(School.parent_code == code))
        )
        if clash.first() is None:
            return code


async def unused_codes(session: AsyncSession, count: int, length: int = CODE_LENGTH) -> list[str]:
    """count fresh codes, distinct and unused, checked a batch at a time (one query per 500,
    not one per code: an export of thousands of invitations took 41 s that way)."""
    fresh: list[str] = []
    while len(fresh) < count:
        wanted = min(500, count - len(fresh))
        batch = {random_code(length) for _ in range(wanted)} - set(fresh)
        taken = set((await session.execute(
            select(Invitation.code).where(Invitation.code.in_(batch)).union_all(
                select(School.parent_code).where(School.parent_code.in_(batch))))).scalars())
        fresh += sorted(batch - taken)
    return fresh[:count]


# ---- links that open the bot -------------------------------------------------------------

USERNAME_KEY = "telegram.username"  # where `safeschool run` keeps the bot's username


async def telegram_username(session: AsyncSession, configured: str | None) -> str | None:
    """Return the bot's username: configured, or learnt by the last `safeschool run`."""
    if configured:
        return configured.lstrip("@")
    row = await session.get(KeyValue, USERNAME_KEY)
    return row.value if row else None


def deep_link(username: str | None, code: str) -> str | None:
    """Return the t.me link that opens the bot with the code, if the username is known."""
    return f"https://t.me/{username}?start={code}" if username else None
