"""What a handler sees while it answers one message (the Context), and how handlers are
found (the Router): by command, by the kind of choice, by the flow a person is in."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.choices import ChoiceData
from bot.core.clock import Clock
from bot.core.i18n import Translator
from bot.core.messages import PUBLIC_VISITOR, Choice, Inbound, Outbound
from bot.core.settings import Settings
from storage.models import Account, Conversation, Person, Role, RoleAssignment

Handler = Callable[["Context"], Awaitable[None]]
CommandMenu = Callable[["Context"], list[tuple[str, str]]]
C = TypeVar("C", bound=ChoiceData)


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
    keep_choices: bool = False  # the replies offer nothing new: earlier options stay open
    offered: list[list[str]] = field(default_factory=list)  # the options open before this

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
        return Translator(self.language, self.inbound.channel)

    def chosen(self, kind: type[C]) -> C | None:
        """The choice this message carries, read as kind (None if it is not one, or stale)."""
        return kind.unpack(self.choice)

    @property
    def public_visitor(self) -> bool:
        """Whether this is a browser on a school's public report page: it may report and
        follow its reports up, anonymously, and nothing else (no codes, no /link)."""
        return self.account.channel == "web" and \
            self.account.external_id.startswith(PUBLIC_VISITOR)

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
        self.menu: CommandMenu | None = None

    def command(self, *names: str) -> Callable[[Handler], Handler]:
        """Register a handler for /name."""
        def register(fn: Handler) -> Handler:
            for name in names:
                self.commands[name] = fn
            return fn
        return register

    def choice(self, kind: type[ChoiceData]) -> Callable[[Handler], Handler]:
        """Register a handler for one kind of choice (its keys start with ``prefix:``)."""
        def register(fn: Handler) -> Handler:
            self.choices[kind.prefix] = fn
            return fn
        return register

    def flow(self, name: str) -> Callable[[Handler], Handler]:
        """Register the handler of a multi-step flow."""
        def register(fn: Handler) -> Handler:
            self.flows[name] = fn
            return fn
        return register

    def command_menu(self, fn: CommandMenu) -> CommandMenu:
        """Register what a person's messenger lists as commands, [name, description]."""
        self.menu = fn
        return fn

    def default(self, fn: Handler) -> Handler:
        """Register what answers plain text outside any flow."""
        self.fallback = fn
        return fn


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


def plain(text: str) -> str:
    """Text as people type it on a phone in a hurry: without diacritics (đ is d), case,
    punctuation or emoji; spaces collapsed."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    kept = "".join(ch if unicodedata.category(ch)[0] in "LN" else " " for ch in decomposed
                   if unicodedata.category(ch) != "Mn")
    return " ".join(kept.casefold().split())


PREFIX_MIN = 3  # letters a typed start of an option needs before it counts


def matching_choices(text: str, offered: list[list[str]]) -> list[list[str]]:
    """The offered choices a typed answer may mean: its number ("2"), its label as written,
    its label without diacritics, case, punctuation or emoji ("tiep nhan" for "✅ Tiếp
    nhận"), or the start of one or more labels ("bat" for "Bắt nạt")."""
    folded = _fold(text).rstrip(".)")
    n = parse_number(folded)
    if n is not None:
        return [offered[n - 1]] if 1 <= n <= len(offered) else []
    exact = [c for c in offered if _fold(c[1]) == folded]
    if exact:
        return exact[:1]
    typed = plain(text)
    if not typed:
        return []
    same = [c for c in offered if plain(c[1]) == typed]
    if same:
        return same
    if len(typed.replace(" ", "")) < PREFIX_MIN:
        return []
    return [c for c in offered if plain(c[1]).startswith(typed)]


def match_choice(text: str, offered: list[list[str]]) -> str | None:
    """The one offered choice key a typed answer means, or None (none, or several)."""
    found = matching_choices(text, offered)
    return found[0][0] if len(found) == 1 else None


def parse_number(text: str, limit: int = 10**9) -> int | None:
    """Read a small whole number typed by a person: ASCII digits only, never huge.

    str.isdigit() also accepts "²" and "①", which int() refuses; a 23-digit number overflows
    the database's integers. Both are "not a number" here.
    """
    text = text.strip()
    if not text or len(text) > 12 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= limit else None
