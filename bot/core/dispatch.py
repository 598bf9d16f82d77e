"""From a normalised inbound message to handler, state and outbox, in one transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached

from bot.core.channel import STRANGER_MENU_LANGUAGE, profile_of
from bot.core.clock import Clock
from bot.core.context import Context, Router, language_of, matching_choices
from bot.core.i18n import Translator
from bot.core.messages import Choice, Inbound, Outbound
from bot.core.outbox import enqueue, set_command_menu
from bot.core.settings import Settings
from storage import db
from storage.conversations import conversation_for
from storage.models import (
    Account,
    InboundSeen,
    InboxItem,
    Priority,
)

_LOGGER = logging.getLogger(__name__)


def _clean(value: str | None) -> str | None:
    """Make text storable: drop NUL characters and lone surrogates (PostgreSQL and UTF-8
    refuse both), keep everything else."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def sanitise(inbound: Inbound) -> Inbound:
    """Return inbound with every text field storable."""
    return dataclasses.replace(
        inbound,
        external_id=_clean(inbound.external_id) or "?",
        event_id=_clean(inbound.event_id) or "?",
        text=_clean(inbound.text),
        command=_clean(inbound.command),
        args=tuple(_clean(a) or "" for a in inbound.args),
        choice=_clean(inbound.choice),
        display_name=_clean(inbound.display_name),
    )


# Built once: building them per update cost more CPU than running them.
_INBOX = InboxItem.__table__
_INBOX_HANDLED = (update(_INBOX)
                  .where(_INBOX.c.channel == bindparam("b_channel"),
                         _INBOX.c.event_id == bindparam("b_event"),
                         _INBOX.c.processed_at.is_(None))
                  .values(processed_at=bindparam("b_now", type_=_INBOX.c.processed_at.type)))
_NEW_ACCOUNT = insert(Account.__table__).returning(Account.__table__.c.id)
# Every column of a new account, so none is left to load later.
_NEW_ACCOUNT_VALUES: dict[str, Any] = {
    **{c.key: None for c in Account.__table__.c if c.key != "id"}, "code_failures": 0}
_ACCOUNT_OF_CHAT = select(Account).where(Account.channel == bindparam("b_channel"),
                                         Account.external_id == bindparam("b_external"))


class Deferred(Exception):
    """The database stayed away while handling an update: it stays stored for later."""


class FloodGate:
    """Counts each account's messages; past the limit, a person is told once to slow down.

    In memory on purpose: it only decides whether to add a polite notice, never whether a
    message is handled (nothing a person sends is dropped).
    """

    def __init__(self, per_minute: int = 30, burst: int = 20, max_accounts: int = 50_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._max = max_accounts

    def flooding(self, channel: str, external_id: str) -> bool:
        """Take one message from the account's bucket; True when it is empty."""
        now = time.monotonic()
        key = (channel, external_id)
        level, at = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        empty = level < 1.0
        self._buckets[key] = (level if empty else level - 1.0, now)
        if len(self._buckets) > self._max:
            self._buckets.pop(next(iter(self._buckets)))
        return empty


FLOOD_NOTICE_WINDOW = 600  # seconds: at most one "please slow down" per person per window


class Dispatcher:
    """Runs one inbound message through the router inside one database transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker,
        router: Router,
        settings: Settings,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.router = router
        self.settings = settings
        self.clock = clock
        self.on_commit = on_commit
        self.flood = FloodGate()
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, inbound: Inbound) -> asyncio.Lock:
        key = (inbound.channel, inbound.external_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def handle(self, inbound: Inbound, *, from_inbox: bool = False) -> bool:
        """Process inbound once; return False when it was a duplicate delivery.

        A transient database error is retried; when the database stays away, Deferred is
        raised and nothing was answered (the update stays in the inbox for later). Any other
        error rolls back, answers an apology in the person's language and logs the traceback
        (the log formatter leaves message content out).
        """
        inbound = sanitise(inbound)
        flooding = self.flood.flooding(inbound.channel, inbound.external_id)
        return await self._handle_alone(inbound, from_inbox, flooding)

    async def handle_together(self, inbounds: list[Inbound]) -> list[bool | Deferred]:
        """Handle stored updates of different chats in one transaction; return one outcome
        each, in order: handled (True), already handled (False), or Deferred (the database is
        away; it stays stored).

        One commit for all, and on SQLite one hand-over of its single connection: for a short
        answer these cost more than the handling itself. When anything goes wrong the whole
        transaction is rolled back and each update is handled alone, as handle() would: a
        failing update gets its apology, the others their answers. An update whose chat is
        busy (another delivery of the chat in hand), or that repeats a chat of this batch, is
        handled alone, after it.
        """
        inbounds = [sanitise(i) for i in inbounds]
        flooding = [self.flood.flooding(i.channel, i.external_id) for i in inbounds]
        outcomes: list[bool | Deferred | None] = [None] * len(inbounds)
        if len(inbounds) > 1:
            free: list[int] = []
            chats: set[tuple[str, str]] = set()
            for n, inbound in enumerate(inbounds):
                chat = (inbound.channel, inbound.external_id)
                if chat not in chats and not self._lock(inbound).locked():
                    chats.add(chat)  # a chat's second update waits for its first, alone
                    free.append(n)
            locks = [self._lock(inbounds[n]) for n in free]
            for lock in locks:
                await lock.acquire()  # free: taken at once, nothing runs in between
            try:
                done = await self._handle_all([inbounds[n] for n in free],
                                              [flooding[n] for n in free])
            except Exception as exc:
                _LOGGER.info("%d updates handled one by one after %s", len(free),
                             type(exc).__name__)
            else:
                for n, handled in zip(free, done, strict=True):
                    outcomes[n] = handled
                if any(done):
                    self.on_commit()
            finally:
                for lock in locks:
                    lock.release()
        away: Deferred | None = None
        for n, inbound in enumerate(inbounds):
            if outcomes[n] is not None:
                continue
            if away is not None:  # the database is away: the rest wait with it, untried
                outcomes[n] = away
                continue
            try:
                outcomes[n] = await self._handle_alone(inbound, True, flooding[n])
            except Deferred as exc:
                away = outcomes[n] = exc
        return [o for o in outcomes if o is not None]

    async def _handle_all(self, inbounds: list[Inbound], flooding: list[bool]) -> list[bool]:
        async with self.sessions() as session, session.begin():
            return [await self._handle_in(session, inbound, True, flood)
                    for inbound, flood in zip(inbounds, flooding, strict=True)]

    async def _handle_alone(self, inbound: Inbound, from_inbox: bool, flooding: bool) -> bool:
        async with self._lock(inbound):
            try:
                done = await self._twice(lambda: db.retry_transient(
                    lambda: self._handle(inbound, from_inbox, flooding),
                    what=f"Handling a {inbound.channel} update"))
            except Exception as exc:
                if db.is_transient(exc):
                    raise Deferred(type(exc).__name__) from exc
                _LOGGER.exception("Handler failed for a %s event", inbound.channel)
                try:
                    done = await db.retry_transient(
                        lambda: self._apologise(inbound, from_inbox),
                        what=f"Answering a failed {inbound.channel} update")
                except Exception as again:
                    if db.is_transient(again):
                        raise Deferred(type(again).__name__) from again
                    _LOGGER.exception("Could not even record the failed %s event",
                                      inbound.channel)
                    return False
        _LOGGER.debug("%s update %s: %s", inbound.channel, inbound.event_id,
                      "handled" if done else "already handled")
        if done:
            self.on_commit()
        return done

    @staticmethod
    async def _twice(work: Callable[[], Awaitable[bool]]) -> bool:
        """Run work; once more after a unique-key conflict, which another transaction's
        concurrent insert causes (the second run sees that row). A conflict that repeats is
        a real error."""
        try:
            return await work()
        except IntegrityError:
            _LOGGER.info("A concurrent insert conflicted; handling the update once more")
            return await work()

    async def _record(self, session: AsyncSession, inbound: Inbound, from_inbox: bool) -> bool:
        """Record the event as handled in this transaction; False if it was already.

        A stored update is marked handled on its inbox row, which says whether it was handled
        before (a redelivery finds the row of its first delivery: the inbox keeps rows far
        longer than a messenger redelivers); anything else is recorded as seen."""
        now = self.clock.now()
        if from_inbox:
            return (await session.execute(_INBOX_HANDLED, {
                "b_channel": inbound.channel, "b_event": inbound.event_id,
                "b_now": now})).rowcount == 1
        stmt = db.insert_ignoring(session.get_bind().dialect.name, InboundSeen,
                                  "channel", "event_id")
        return (await session.execute(stmt, {"channel": inbound.channel,
                                             "event_id": inbound.event_id,
                                             "at": now})).rowcount == 1

    async def _handle(self, inbound: Inbound, from_inbox: bool = False,
                      flooding: bool = False) -> bool:
        async with self.sessions() as session, session.begin():
            return await self._handle_in(session, inbound, from_inbox, flooding)

    async def _handle_in(self, session: AsyncSession, inbound: Inbound, from_inbox: bool,
                         flooding: bool) -> bool:
        """Handle inbound in session's transaction; False when it was handled before."""
        now = self.clock.now()
        if not await self._record(session, inbound, from_inbox):
            return False
        account, created = await self._account(session, inbound)
        if inbound.member is not None:  # the person blocked or unblocked the bot
            account.blocked_at = now if inbound.member == "kicked" else None
            return True
        conversation = await conversation_for(session, account.id, now,
                                              new_account=created)
        ctx = Context(session, self.settings, self.clock, inbound, account, conversation)
        offered = list(conversation.choices or [])
        conversation.choices = []
        ctx.offered = offered
        await self._route(ctx, offered)
        if flooding:
            window = int(now.timestamp()) // FLOOD_NOTICE_WINDOW
            await enqueue(session, account, Outbound(ctx.t("error.flood"),
                                                     language=ctx.language),
                          key=f"flood:{account.id}:{window}", now=now,
                          priority=Priority.REPLY)
        await self._write_replies(ctx, now)
        if self._own_menu(ctx):
            # After the replies: a registration's menu follows its "welcome".
            await set_command_menu(session, account, self.router.menu(ctx),
                                   key=f"commands:{inbound.channel}:{inbound.event_id}",
                                   now=now)
        conversation.updated_at = now
        return True

    def _own_menu(self, ctx: Context) -> bool:
        """Whether this chat needs a command menu of its own: a member's follows their roles;
        a stranger who never had one sees the messenger-wide menu unless they chose another
        language (no message per newcomer for what every chat already shows)."""
        if self.router.menu is None or not profile_of(ctx.inbound.channel).commands:
            return False
        return bool(ctx.roles or ctx.account.commands_digest is not None
                    or ctx.language != STRANGER_MENU_LANGUAGE)

    async def _account(self, session: AsyncSession, inbound: Inbound) -> tuple[Account, bool]:
        """The chat's account, and whether it was created just now (a first message)."""
        now = self.clock.now()
        result = await session.execute(_ACCOUNT_OF_CHAT, {"b_channel": inbound.channel,
                                                          "b_external": inbound.external_id})
        account = result.scalar_one_or_none()
        if account is None:
            # Inserted by one plain statement and handed to the session as if just read: the
            # unit of work flushing a new object took a tenth of the CPU of a first message.
            values = dict(_NEW_ACCOUNT_VALUES, channel=inbound.channel,
                          external_id=inbound.external_id, display_name=inbound.display_name,
                          created_at=now, last_seen_at=now)
            values["id"] = (await session.execute(_NEW_ACCOUNT, values)).scalar_one()
            # person=None: a new account has nobody linked yet, so reading it needs no query
            account = Account(**values, person=None)
            make_transient_to_detached(account)
            session.add(account)
            return account, True
        account.last_seen_at = now
        if account.blocked_at is not None:
            account.blocked_at = None  # they wrote to us, so they can hear us again
        return account, False

    async def _route(self, ctx: Context, offered: list[list[str]]) -> None:
        inbound = ctx.inbound
        router = self.router
        if inbound.unsupported == "withheld":
            # The messenger withheld the content (a link, a document, a contact card, or a
            # protected sender, often a child): say so, and leave the conversation where it
            # was; a flow asks its current question again, otherwise the options stay open.
            ctx.reply("error.withheld")
            flow = ctx.conversation.flow
            if flow and flow in router.flows:
                await router.flows[flow](ctx)
            else:
                ctx.conversation.choices = offered
                ctx.keep_choices = True
            return
        flow = ctx.conversation.flow
        if inbound.edited and flow and flow in router.flows:
            # Inside a flow an edit is an answer to some earlier question: the flow decides
            # (the report says edits are not read and asks again). Outside one, an edited
            # message is read as what it says: an edited /start is a /start.
            await router.flows[flow](ctx)
            return
        if inbound.command is not None:
            handler = router.commands.get(inbound.command) or router.commands.get("__unknown__")
            if handler is not None:
                await handler(ctx)
            return
        key = inbound.choice
        if key is None and inbound.text is not None and offered:
            found = matching_choices(inbound.text, offered)
            if len(found) > 1:  # "kh" for "Không" and "Khác": ask which, with just those
                ctx.reply("choices.ambiguous", [Choice(k, label) for k, label in found])
                return
            key = found[0][0] if found else None
        if key is not None:
            ctx.choice = key
            prefix = key.split(":", 1)[0]
            offered_keys = {k for k, _ in offered}
            flow = ctx.conversation.flow
            if key in offered_keys and flow and prefix == flow:
                await router.flows[flow](ctx)
                return
            handler = router.choices.get(prefix)
            if handler is not None and (key in offered_keys or prefix in GLOBAL_CHOICES):
                await handler(ctx)
                return
            if inbound.choice is not None:  # a button from an old message
                # Refuse it without touching the question now on screen: its buttons (and a
                # typed number) must still work.
                ctx.reply("error.stale_choice")
                ctx.conversation.choices = offered
                ctx.keep_choices = True
                return
            ctx.choice = None
        flow = ctx.conversation.flow
        if flow and flow in router.flows:
            await router.flows[flow](ctx)
            return
        if router.fallback is not None:
            await router.fallback(ctx)

    async def _write_replies(self, ctx: Context, now: Any) -> None:
        offered: list[list[str]] = []
        for n, message in enumerate(ctx.replies):
            message.language = message.language or ctx.language
            await enqueue(ctx.session, ctx.account, message,
                          key=f"reply:{ctx.inbound.channel}:{ctx.inbound.event_id}:{n}",
                          now=now, priority=Priority.REPLY)
            if message.choices:
                offered = [[c.key, c.label] for c in message.choices]
        if offered or not ctx.keep_choices:
            ctx.conversation.choices = offered

    async def _apologise(self, inbound: Inbound, from_inbox: bool = False) -> bool:
        """Record the event and tell the person something went wrong, so nothing is silent."""
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            if not await self._record(session, inbound, from_inbox):
                return False
            account, _created = await self._account(session, inbound)
            lang = language_of(account, self.settings.default_language)
            await enqueue(session, account, Outbound(Translator(lang)("error.generic")),
                          key=f"reply:{inbound.channel}:{inbound.event_id}:error", now=now)
        return True


# Choices valid from any message, even an old one: menus, language, and case actions
# (alerts arrive outside any conversation; their handler checks who may act).
GLOBAL_CHOICES = {"menu", "lang", "case", "alerts", "topics", "camp"}
