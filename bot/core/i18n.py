"""Message catalogues (gettext .po, read with Babel): vi by default, en on request."""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

from bot.core.settings import LANGUAGES

LOCALES = Path(__file__).parents[1] / "locales"


class CatalogueError(Exception):
    """A catalogue is missing, incomplete or inconsistent."""


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@cache
def catalogues() -> dict[str, dict[str, str]]:
    """Load and cross-check every catalogue; each language must have every key."""
    loaded: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        path = LOCALES / lang / "LC_MESSAGES" / "messages.po"
        if not path.exists():
            raise CatalogueError(f"missing catalogue {path}")
        with path.open("rb") as fh:
            cat = read_po(fh, locale=lang)
        loaded[lang] = {m.id: m.string for m in cat if m.id and isinstance(m.id, str)}
    keys = {lang: set(msgs) for lang, msgs in loaded.items()}
    union = set().union(*keys.values())
    problems = []
    for lang, msgs in loaded.items():
        for key in sorted(union - keys[lang]):
            problems.append(f"{lang}: missing {key}")
        for key, text in msgs.items():
            if not text:
                problems.append(f"{lang}: empty {key}")
    for key in sorted(union):
        shapes = {lang: _fields(loaded[lang].get(key, "")) for lang in loaded}
        if len({frozenset(s) for s in shapes.values()}) > 1:
            problems.append(f"placeholders differ for {key}: {shapes}")
    if problems:
        raise CatalogueError("; ".join(problems))
    return loaded


class Translator:
    """Text in one language; falls back to Vietnamese, never to a raw key silently.

    With a channel, a message written for that messenger wins: `report.where@zalo` says
    nothing of sharing a location, which a Zalo bot cannot receive."""

    def __init__(self, language: str, channel: str | None = None) -> None:
        self.language = language if language in LANGUAGES else "vi"
        self.channel = channel
        self._messages = catalogues()[self.language]

    def __call__(self, key: str, **values: object) -> str:
        """Return the text for key with values filled in."""
        text = self._messages.get(f"{key}@{self.channel}") if self.channel else None
        if text is None:
            try:
                text = self._messages[key]
            except KeyError:
                raise CatalogueError(f"no message {key!r}") from None
        return text.format(**values) if values else text
