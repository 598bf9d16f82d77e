"""What a choice carries, typed: packed where the choice is built, unpacked once.

A choice's key travels to the messenger and back (Telegram's callback_data, Zalo's numbered
menu mapped back by the dispatcher) as one short string, ``prefix:field:field``. Each kind
of choice is a small frozen dataclass declared with `@choice_data("prefix")`; its fields are
`int` or `str`, optional ones last. `pack()` refuses a key that could not travel (longer
than 64 bytes, or a text field with a colon) where it is built, not when it is sent, and
`unpack()` returns None for anything malformed or stale, never raises.

    @choice_data("case")
    @dataclass(frozen=True)
    class CaseChoice(ChoiceData):
        action: str
        case_id: int
        arg: str | None = None

    CaseChoice("close", 12, "resolved").pack()   # "case:close:12:resolved"
    CaseChoice.unpack("case:close:12:resolved")  # CaseChoice("close", 12, "resolved")
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

from bot.core.messages import Choice

KEY_MAX_BYTES = 64  # the smallest any messenger takes (Telegram's callback_data)
SEPARATOR = ":"
T = TypeVar("T", bound=type)


class ChoiceError(ValueError):
    """A choice that cannot be packed (a programming error, caught where it is built)."""


class ChoiceData:
    """Base of every typed choice; subclasses are dataclasses made with `choice_data`."""

    prefix: ClassVar[str]
    _fields: ClassVar[tuple[tuple[str, type, bool], ...]]  # name, int|str, required

    def pack(self) -> str:
        """Return the key: prefix and fields joined by colons, trailing Nones left out."""
        parts = [self.prefix]
        values = [getattr(self, name) for name, _kind, _required in self._fields]
        while values and values[-1] is None:
            values.pop()
        for (name, kind, _required), value in zip(self._fields, values, strict=False):
            if value is None:
                raise ChoiceError(f"{type(self).__name__}.{name} is empty before a later field")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                                or value < 0):
                raise ChoiceError(f"{type(self).__name__}.{name} must be a whole number")
            text = str(value)
            if not text or SEPARATOR in text:
                raise ChoiceError(f"{type(self).__name__}.{name} cannot be {text!r}")
            parts.append(text)
        key = SEPARATOR.join(parts)
        if len(key.encode()) > KEY_MAX_BYTES:
            raise ChoiceError(f"choice key {key!r} is longer than {KEY_MAX_BYTES} bytes")
        return key

    def choice(self, label: str) -> Choice:
        """The option to offer: this data under a label."""
        return Choice(self.pack(), label)

    @classmethod
    def unpack(cls, key: str | None) -> Self | None:
        """Read a key back; None when it is not one of ours or is malformed."""
        if not key:
            return None
        prefix, *parts = key.split(SEPARATOR)
        required = sum(1 for _n, _k, req in cls._fields if req)
        if prefix != cls.prefix or not required <= len(parts) <= len(cls._fields):
            return None
        values: dict[str, Any] = {}
        for (name, kind, _required), text in zip(cls._fields, parts, strict=False):
            if kind is int:
                if not (text.isascii() and text.isdigit()) or len(text) > 12:
                    return None
                values[name] = int(text)
            elif not text:
                return None
            else:
                values[name] = text
        return cls(**values)


def choice_data(prefix: str) -> Callable[[T], T]:
    """Declare a dataclass as the choice kind carried under prefix."""
    if not prefix or SEPARATOR in prefix:
        raise ChoiceError(f"bad choice prefix {prefix!r}")

    def declare(cls: T) -> T:
        hints = typing.get_type_hints(cls)
        fields = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            hint = hints[f.name]
            args = set(typing.get_args(hint)) - {type(None)}
            kind = next(iter(args)) if args else hint
            if kind not in (int, str):
                raise ChoiceError(f"{cls.__name__}.{f.name}: only int and str fields travel")
            required = f.default is dataclasses.MISSING
            fields.append((f.name, kind, required))
        cls.prefix = prefix
        cls._fields = tuple(fields)
        return cls

    return declare
