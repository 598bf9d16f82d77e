"""From a normalised inbound message to handler, state and outbox, in one transaction."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.i18n import Translator
from bot.messages import Choice, Inbound, Outbound
from bot.outbox import enqueue
from bot.settings import Settings
from storage.models import (
    Account,
    Conversation,
    InboundSeen,
    Person,
    Priority,
    Role,
    RoleAssignment,
)

_LOGGER = logging.getLogger(__name__)

Handler = Callable[["Context"], Awaitable[None]]


@dataclass
class Context:
    """Everything a handler may use while it answers one inbound message."""

    session: AsyncSession
    settings: Settings
    clock: Clock
    inbound: Inbound
    account: Account
    conversation: Conversation
    choice: str | None = None
    replies: list[Outbound] = field(default_factory=list)

    @property
    def person(self) -> Person | None:
        """Return the registered person behind the account, if any."""
        return self.account.person

    @property
    def roles(self) -> list[RoleAssignment]:
        """Return the person's role assignments (empty for strangers)."""
        return list(self.person.roles) if self.person else []

    @property
    def language(self) -> str:
        """Return the language this person reads."""
        return language_of(self.account, self.settings.default_language)

    @property
    def t(self) -> Translator:
        """Return the translator for this person's language."""
        return Translator(self.language)

    def has_role(self, *roles: Role) -> bool:
        """Tell whether the person holds any of roles (in any scope)."""
        return any(r.role in roles for r in self.roles)

    def reply(self, key: str, choices: list[Choice] | None = None, **values: Any) -> None:
        """Answer with a catalogue message and optional choices."""
        self.replies.append(Outbound(self.t(key, **values), list(choices or []),
                                     language=self.language))

    def reply_text(self, text: str, choices: list[Choice] | None = None) -> None:
        """Answer with text already composed from catalogue parts."""
        self.replies.append(Outbound(text, list(choices or []), language=self.language))

    def goto(self, flow: str | None, step: str | None = None, **data: Any) -> None:
        """Move the conversation to a flow step, replacing its data."""
        self.conversation.flow = flow
        self.conversation.step = step
        self.conversation.data = dict(data)

    def update(self, **data: Any) -> None:
        """Add to the conversation's data (a new dict, so the JSON column sees the change)."""
        self.conversation.data = {**(self.conversation.data or {}), **data}

    def clear(self) -> None:
        """End any flow."""
        self.goto(None)


def language_of(account: Account, default: str) -> str:
    """The language someone reads: their own choice, their account's, else the default."""
    if account.person is not None and account.person.language:
        return account.person.language
    return account.language or default


class Router:
    """Where handler modules register commands, choice prefixes and flows."""

    def __init__(self) -> None:
        self.commands: dict[str, Handler] = {}
        self.choices: dict[str, Handler] = {}
        self.flows: dict[str, Handler] = {}
        self.fallback: Handler | None = None

    def command(self, *names: str) -> Callable[[Handler], Handler]:
        """Register a handler for /name."""
        def register(fn: Handler) -> Handler:
            for name in names:
                self.commands[name] = fn
            return fn
        return register

    def choice(self, prefix: str) -> Callable[[Handler], Handler]:
        """Register a handler for choices whose key starts with ``prefix:``."""
        def register(fn: Handler) -> Handler:
            self.choices[prefix] = fn
            return fn
        return register

    def flow(self, name: str) -> Callable[[Handler], Handler]:
        """Register the handler of a multi-step flow."""
        def register(fn: Handler) -> Handler:
            self.flows[name] = fn
            return fn
        return register

    def default(self, fn: Handler) -> Handler:
        """Register what answers plain text outside any flow."""
        self.fallback = fn
        return fn


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


def match_choice(text: str, offered: list[list[str]]) -> str | None:
    """Map a typed number ("2") or an option's label to the offered choice key."""
    folded = _fold(text).rstrip(".)")
    if folded.isdigit():
        n = int(folded)
        return offered[n - 1][0] if 1 <= n <= len(offered) else None
    for key, label in offered:
        if _fold(label) == folded:
            return key
    return None


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

    async def handle(self, inbound: Inbound) -> bool:
        """Process inbound once; return False when it was a duplicate delivery."""
        async with self._lock(inbound):
            try:
                done = await self._handle(inbound)
            except IntegrityError:
                # Another instance recorded the same event first: a duplicate delivery.
                _LOGGER.info("Duplicate %s event ignored", inbound.channel)
                return False
            except Exception:
                _LOGGER.exception("Handler failed for a %s event", inbound.channel)
                await self._apologise(inbound)
                done = True
        if done:
            self.on_commit()
        return done

    async def _handle(self, inbound: Inbound) -> bool:
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            if await self._seen(session, inbound):
                return False
            session.add(InboundSeen(channel=inbound.channel, event_id=inbound.event_id, at=now))
            await session.flush()
            account = await self._account(session, inbound)
            conversation = await session.get(Conversation, account.id)
            if conversation is None:
                conversation = Conversation(account_id=account.id, data={}, choices=[],
                                            updated_at=now)
                session.add(conversation)
            ctx = Context(session, self.settings, self.clock, inbound, account, conversation)
            offered = list(conversation.choices or [])
            conversation.choices = []
            await self._route(ctx, offered)
            await self._write_replies(ctx, now)
            conversation.updated_at = now
        return True

    async def _seen(self, session: AsyncSession, inbound: Inbound) -> bool:
        result = await session.execute(
            select(InboundSeen.id).where(
                InboundSeen.channel == inbound.channel, InboundSeen.event_id == inbound.event_id
            )
        )
        return result.first() is not None

    async def _account(self, session: AsyncSession, inbound: Inbound) -> Account:
        now = self.clock.now()
        result = await session.execute(
            select(Account)
            .where(Account.channel == inbound.channel, Account.external_id == inbound.external_id)
        )
        account = result.scalar_one_or_none()
        if account is None:
            account = Account(channel=inbound.channel, external_id=inbound.external_id,
                              display_name=inbound.display_name, created_at=now, code_failures=0)
            session.add(account)
            await session.flush()
            await session.refresh(account, ["person"])
        account.last_seen_at = now
        if account.blocked_at is not None:
            account.blocked_at = None  # they wrote to us, so they can hear us again
        return account

    async def _route(self, ctx: Context, offered: list[list[str]]) -> None:
        inbound = ctx.inbound
        router = self.router
        if inbound.unsupported == "protected":
            # The messenger withheld the content (a protected sender, often a child):
            # whatever flow they are in, the answer is the same, and never silence.
            ctx.reply("error.protected")
            return
        if inbound.command is not None:
            handler = router.commands.get(inbound.command) or router.commands.get("__unknown__")
            if handler is not None:
                await handler(ctx)
            return
        key = inbound.choice
        if key is None and inbound.text is not None and offered:
            key = match_choice(inbound.text, offered)
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
                ctx.reply("error.stale_choice")
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
        ctx.conversation.choices = offered

    async def _apologise(self, inbound: Inbound) -> None:
        """Record the event and tell the person something went wrong, so nothing is silent."""
        now = self.clock.now()
        try:
            async with self.sessions() as session, session.begin():
                if await self._seen(session, inbound):
                    return
                session.add(InboundSeen(channel=inbound.channel, event_id=inbound.event_id,
                                        at=now))
                account = await self._account(session, inbound)
                lang = language_of(account, self.settings.default_language)
                await enqueue(session, account, Outbound(Translator(lang)("error.generic")),
                              key=f"reply:{inbound.channel}:{inbound.event_id}:error", now=now)
        except Exception:
            _LOGGER.exception("Could not even record the failed %s event", inbound.channel)


# Choices valid from any message, even an old one: menus, language, and case actions
# (alerts arrive outside any conversation; their handler checks who may act).
GLOBAL_CHOICES = {"menu", "lang", "case", "alerts", "topics", "camp"}
