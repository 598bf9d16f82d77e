"""A person's conversation row, created race-free."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from storage.db import insert_ignoring
from storage.models import Conversation

_NEW_CONVERSATION = insert(Conversation.__table__)


async def conversation_for(session: AsyncSession, account_id: int, now: datetime, *,
                           new_account: bool = False) -> Conversation:
    """Return the account's conversation, creating an empty one if it has none.

    Two transactions may want it at once (two reports alerting the same officer): the insert
    ignores a conflict instead of failing on the primary key, then both read the one row.
    For an account created in this very transaction (new_account) nobody else can see it
    yet, so the conversation is simply inserted: no look, no second read.
    """
    if new_account:
        # One plain INSERT, the row handed to the session as if just read (see the new
        # account in bot/core/dispatch.py): a /help changes nothing in it, so nothing more
        # is written at the commit.
        values = {"account_id": account_id, "flow": None, "step": None, "data": {},
                  "choices": [], "updated_at": now}
        await session.execute(_NEW_CONVERSATION, values)
        conversation = Conversation(**values)
        make_transient_to_detached(conversation)
        session.add(conversation)
        return conversation
    conversation = await session.get(Conversation, account_id)
    if conversation is not None:
        return conversation
    await session.execute(insert_ignoring(session.get_bind().dialect.name, Conversation,
                                          "account_id"),
                          {"account_id": account_id, "data": {}, "choices": [],
                           "updated_at": now})
    conversation = await session.get(Conversation, account_id, populate_existing=True)
    assert conversation is not None
    return conversation
