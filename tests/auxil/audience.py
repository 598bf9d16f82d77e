"""Bulk-create parents (with or without messenger accounts) for campaign tests and benchmarks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Account, Person, Role, RoleAssignment, School


async def add_parents(session: AsyncSession, school_code: str, count: int, now: datetime, *,
                      first_chat: int, language: str | None = None, channel: str = "telegram",
                      with_account: bool = True) -> list[int]:
    """Insert count parents of a school in a few statements; return their person ids."""
    school = (await session.execute(select(School).where(School.code == school_code)))\
        .scalar_one()
    ids = []
    for start in range(0, count, 5000):
        chunk = min(5000, count - start)
        result = await session.execute(
            insert(Person).returning(Person.id),
            [{"language": language, "created_at": now, "campaigns_stopped": False}
             for _ in range(chunk)])
        chunk_ids = sorted(result.scalars())
        ids += chunk_ids
        await session.execute(insert(RoleAssignment), [
            {"person_id": pid, "role": Role.PARENT, "school_id": school.id, "created_at": now}
            for pid in chunk_ids])
        if with_account:
            await session.execute(insert(Account), [
                {"channel": channel, "external_id": str(first_chat + start + n),
                 "person_id": pid, "created_at": now, "code_failures": 0}
                for n, pid in enumerate(chunk_ids)])
    return ids
