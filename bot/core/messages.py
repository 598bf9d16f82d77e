"""The channel-agnostic shapes every handler sees and produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The web chat's public identity (a school's public report page): its accounts' ids start so.
PUBLIC_VISITOR = "p-"


@dataclass(frozen=True)
class Attachment:
    """A file a person sent: a photo, voice note, video or document."""

    kind: str
    ref: str
    mime_type: str | None = None
    size: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Inbound:
    """One thing a person did in a messenger, with the messenger stripped away."""

    channel: str
    external_id: str
    event_id: str
    text: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    choice: str | None = None
    display_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: tuple[float, float] | None = None
    unsupported: str | None = None
    member: str | None = None  # "kicked" when the person blocked the bot, "member" when back
    edited: bool = False  # a message the person changed after sending it


def inbound_to_payload(inbound: Inbound) -> dict[str, Any]:
    """Serialise an Inbound for the durable inbox."""
    return asdict(inbound)


def inbound_from_payload(data: dict[str, Any]) -> Inbound:
    """Rebuild an Inbound stored in the inbox."""
    fields = dict(data)
    fields["args"] = tuple(fields.get("args") or ())
    fields["attachments"] = tuple(Attachment(**a) for a in fields.get("attachments") or ())
    location = fields.get("location")
    fields["location"] = tuple(location) if location else None
    return Inbound(**fields)


@dataclass(frozen=True)
class Choice:
    """An option offered to a person: a button on Telegram, a numbered line on Zalo."""

    key: str
    label: str


@dataclass(frozen=True)
class Media:
    """A file to send: a messenger file id (usable on its own channel) or a public URL."""

    kind: str
    ref: str
    channel: str
    path: str | None = None  # our own copy, preferred where the channel can upload it


@dataclass
class Outbound:
    """A message to one person, already in their language; with media, text is the caption."""

    text: str
    choices: list[Choice] = field(default_factory=list)
    media: Media | None = None
    language: str | None = None  # for what a channel adds itself (a numbered menu's hint)
    # Not a message: the chat's command menu to set, [command, description] (Telegram).
    commands: list[tuple[str, str]] | None = None

    def to_payload(self) -> dict[str, Any]:
        """Serialise for the outbox row."""
        payload: dict[str, Any] = {"text": self.text,
                                   "choices": [[c.key, c.label] for c in self.choices]}
        if self.media is not None:
            m = self.media
            payload["media"] = [m.kind, m.ref, m.channel, m.path]
        if self.commands is not None:
            payload["commands"] = [list(c) for c in self.commands]
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Outbound:
        """Rebuild from an outbox row."""
        media = Media(*payload["media"]) if payload.get("media") else None
        commands = payload.get("commands")
        return cls(payload["text"], [Choice(k, label) for k, label in payload.get("choices", [])],
                   media, commands=None if commands is None else
                   [(name, about) for name, about in commands])


def utf16_units(text: str) -> int:
    """Length as the messengers count it: UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fitting(text: str, limit: int) -> int:
    """How many characters of text fit in limit UTF-16 code units."""
    if utf16_units(text[:limit]) <= limit:
        return min(len(text), limit)
    low, high = 0, limit  # the answer lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if utf16_units(text[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return low


def _inside_quotes(text: str) -> bool:
    """Tell whether text ends inside a quotation (“…” or "…")."""
    return text.count("“") > text.count("”") or text.count('"') % 2 == 1


def _best_cut(window: str, floor: int) -> int:
    """Where to cut a window: after a paragraph, a line, a sentence or a word (in that order
    of preference), outside a quotation if any such place is; else at the window's end."""
    fallback = -1
    for sep in ("\n\n", "\n", ". ", " "):
        pos = window.rfind(sep)
        while pos > floor:
            cut = pos + len(sep)
            if not _inside_quotes(window[:cut]):
                return cut
            if fallback < 0:
                fallback = cut
            pos = window.rfind(sep, 0, pos)
    return fallback if fallback > 0 else len(window)


def split_text(text: str, limit: int) -> list[str]:
    """Split text into chunks of at most limit UTF-16 code units (how Telegram and Zalo count),
    at paragraph, line, sentence or word ends."""
    chunks: list[str] = []
    rest = text
    while utf16_units(rest) > limit:
        size = _fitting(rest, limit)
        window = rest[:size]
        cut = _best_cut(window, size // 3)
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if not chunks:
        chunks.append(rest)
    elif rest.strip():
        chunks.append(rest.rstrip())
    return chunks
