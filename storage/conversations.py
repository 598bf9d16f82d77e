"""A person's conversation row, created race-free."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert_insert
from storage.models import Conversation


async def conversation_for(session: AsyncSession, account_id: int, now: datetime) -> Conversation:
    """Return the account's conversation, creating an empty one if it has none.

    Two transactions may want it at once (two reports alerting the same officer): the insert
    ignores a conflict instead of failing on the primary key, then both read the one row.
    """
    conversation = await session.get(Conversation, account_id)
    if conversation is not None:
        return conversation
    stmt = upsert_insert(session.get_bind().dialect.name, Conversation).values(
        account_id=account_id, data={}, choices=[], updated_at=now,
    ).on_conflict_do_nothing(index_elements=["account_id"])
    await session.execute(stmt)
    conversation = await session.get(Conversation, account_id, populate_existing=True)
    assert conversation is not None
    return conversation
