"""Writing outbound messages: always a row first, in the caller's transaction."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.channel import profile_of
from bot.core.i18n import Translator
from bot.core.messages import Outbound, split_text
from storage.db import insert_ignoring
from storage.models import Account, Outbox, OutboxStatus, Person, Priority


def fit(message: Outbound, channel: str) -> Outbound:
    """Fit a message to a channel: files the channel cannot fetch replaced by a note, then
    whatever the channel's profile does (e.g. choices as a numbered menu)."""
    text, media = message.text, message.media
    if media is not None and media.channel != channel and not media.ref.startswith("http"):
        t = Translator(message.language or "vi")
        text, media = f"{text}\n{t('relay.media_unavailable', kind=t(f'media.{media.kind}'))}", None
    return profile_of(channel).fit(Outbound(text, message.choices, media, message.language))


def outbox_rows(account: Any, message: Outbound, *, key: str, now: datetime,
                priority: int = Priority.REPLY, due: datetime | None = None,
                **extra: Any) -> list[dict[str, Any]]:
    """Build the outbox rows for one message: several when the text exceeds the channel's limit
    (``key#2`` …, so each part is retried and recorded on its own; choices ride on the last).

    account is an Account or any row with id, channel and external_id."""
    message = fit(message, account.channel)
    profile = profile_of(account.channel)
    limit = profile.caption_limit if message.media else profile.text_limit
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
            "next_attempt_at": due or now,
            "created_at": now,
            **extra,
        })
    return rows


async def insert_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows; a row whose idempotency key exists already is skipped."""
    if rows:
        stmt = insert_ignoring(session.get_bind().dialect.name, Outbox, "idempotency_key")
        await session.execute(stmt, rows)  # executemany: no giant statement to compile


async def enqueue(
    session: AsyncSession,
    account: Account,
    message: Outbound,
    *,
    key: str,
    now: datetime,
    priority: int = Priority.REPLY,
) -> None:
    """Queue message for account under an idempotency key; a repeated key is a no-op."""
    await insert_rows(session, outbox_rows(account, message, key=key, now=now,
                                           priority=priority))


async def set_command_menu(session: AsyncSession, account: Account,
                           commands: list[tuple[str, str]], *, key: str, now: datetime) -> bool:
    """Queue the chat's command menu (Telegram's setMyCommands) when it differs from the one
    the messenger was last given; a row like any message, so it is retried and never lost.
    Returns whether one was queued."""
    digest = hashlib.sha256(json.dumps(commands, ensure_ascii=False).encode()).hexdigest()[:32]
    if account.commands_digest == digest:
        return False
    account.commands_digest = digest
    await insert_rows(session, [{
        "idempotency_key": key, "account_id": account.id, "channel": account.channel,
        "chat_id": account.external_id, "priority": int(Priority.NOTICE),
        "payload": Outbound("", commands=commands).to_payload(),
        "status": OutboxStatus.PENDING, "attempts": 0, "next_attempt_at": now,
        "created_at": now}])
    return True


async def preferred_account(session: AsyncSession, person_id: int) -> Account | None:
    """Return the account a person is reached on: their chosen messenger if they picked one,
    else the most recently used; never a blocked one."""
    chosen = select(Person.alert_channel).where(Person.id == person_id).scalar_subquery()
    result = await session.execute(
        select(Account)
        .where(Account.person_id == person_id, Account.blocked_at.is_(None))
        .order_by(case((Account.channel == chosen, 0), else_=1),
                  Account.last_seen_at.desc().nulls_last(), Account.id)
        .limit(1)
    )
    return result.scalar_one_or_none()
