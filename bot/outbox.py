"""Writing outbound messages: always a row first, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Outbound, split_text
from storage.models import Account, Outbox, OutboxStatus, Priority

TEXT_LIMITS = {"telegram": 4096, "zalo": 2000}
CAPTION_LIMIT = 1024  # Telegram's caption limit; Zalo's is larger


def _insert(session: AsyncSession):
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(Outbox)


async def enqueue(
    session: AsyncSession,
    account: Account,
    message: Outbound,
    *,
    key: str,
    now: datetime,
    priority: int = Priority.REPLY,
) -> None:
    """Queue message for account under an idempotency key; a repeated key is a no-op.

    A text longer than the channel allows becomes several rows (``key#2`` …) so each part is
    retried and recorded on its own; the choices ride on the last part.
    """
    limit = CAPTION_LIMIT if message.media else TEXT_LIMITS.get(account.channel, 2000)
    parts = split_text(message.text, limit)
    rows = []
    for n, part in enumerate(parts, start=1):
        last = n == len(parts)
        payload = Outbound(part, message.choices if last else [],
                           message.media if n == 1 else None).to_payload()
        rows.append({
            "idempotency_key": key if n == 1 else f"{key}#{n}",
            "account_id": account.id,
            "channel": account.channel,
            "chat_id": account.external_id,
            "priority": int(priority),
            "payload": payload,
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        })
    stmt = _insert(session).values(rows).on_conflict_do_nothing(index_elements=["idempotency_key"])
    await session.execute(stmt)


async def preferred_account(session: AsyncSession, person_id: int) -> Account | None:
    """Return the account a person is reached on: the most recently used, not blocked."""
    result = await session.execute(
        select(Account)
        .where(Account.person_id == person_id, Account.blocked_at.is_(None))
        .order_by(Account.last_seen_at.desc().nulls_last(), Account.id)
        .limit(1)
    )
    return result.scalar_one_or_none()
