"""Queue outbox messages straight into the database, for delivery and pace tests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.messages import Outbound
from bot.core.outbox import insert_rows, outbox_rows
from storage.models import Account


async def queue_to_chats(sessions: async_sessionmaker, counts: dict[int, int], *, priority: int,
                         now: datetime, text: str = "tin") -> None:
    """Give each chat id its own Telegram account and queue `count` messages to it."""
    async with sessions() as session, session.begin():
        accounts = [Account(channel="telegram", external_id=str(chat), created_at=now,
                            code_failures=0) for chat in counts]
        session.add_all(accounts)
        await session.flush()
        rows = []
        for account, count in zip(accounts, counts.values(), strict=True):
            for n in range(count):
                rows += outbox_rows(account, Outbound(f"{text} {n}"), now=now,
                                    key=f"test:{account.id}:{n}", priority=priority)
        await insert_rows(session, rows)
