"""The awareness content library and built-in calendar, shipped as TOML data and validated."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bot.core.channel import smallest_text_limit
from bot.services.timing import ScheduleError, validate_schedule

CONTENT_DIR = Path(__file__).parents[1] / "data"
TOPICS = ("abuse", "violence", "cyber", "trafficking", "general")
AUDIENCES = ("parents", "staff", "students")
SCREEN = 700  # one phone screen; leaves room for the how-to-stop line under every channel limit
ROLES = ("parent", "liaison", "officer", "admin")


TITLE_MAX = 60
# Whom a library audience is written for, by the role that receives a campaign.
ROLE_AUDIENCE = {"parent": "parents", "liaison": "staff", "officer": "staff", "admin": "staff"}


class ContentError(Exception):
    """The shipped content or calendar is not usable; the message lists every problem."""


@dataclass(frozen=True)
class Item:
    """One awareness message in both languages."""

    id: str
    topic: str
    audiences: tuple[str, ...]
    vi: str
    en: str
    image: str | None = None

    def text(self, language: str) -> str:
        """Return the text in language (Vietnamese if unknown)."""
        return self.en if language == "en" else self.vi

    def suits(self, roles: Iterable[str]) -> bool:
        """Whether the item is written for every one of these recipients' roles."""
        return all(ROLE_AUDIENCE.get(role) in self.audiences for role in roles)

    def title(self, language: str) -> str:
        """A short name for menus: the text up to its first colon, at most 60 characters."""
        head = self.text(language).partition(":")[0].strip()
        if len(head) <= TITLE_MAX:
            return head
        return head[: TITLE_MAX - 1].rsplit(" ", 1)[0].rstrip(",;.") + "…"  # at a word


@dataclass(frozen=True)
class CalendarEntry:
    """A campaign template an admin can switch on for an area."""

    id: str
    name: str
    schedule: str
    roles: tuple[str, ...]
    content: tuple[str, ...]


def audience_mismatch(content_ids: Iterable[str], roles: Iterable[str]) -> list[Item]:
    """The library items among content_ids that are not written for every role the campaign
    reaches (a students' tip sent to parents): worth a second look before it goes out."""
    roles = list(roles)
    items = library()
    return [items[c] for c in content_ids if c in items and not items[c].suits(roles)]


def _load(name: str) -> dict:
    path = CONTENT_DIR / name
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ContentError(f"{name}: {exc}") from exc


def check_items(raw: list[dict]) -> tuple[dict[str, Item], list[str]]:
    """Validate library items; return them with every problem found."""
    items: dict[str, Item] = {}
    problems: list[str] = []
    limit = min(SCREEN, smallest_text_limit())
    for n, entry in enumerate(raw, start=1):
        where = f"library item {n} ({entry.get('id', '?')})"
        missing = [k for k in ("id", "topic", "audiences", "vi", "en") if not entry.get(k)]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if entry["id"] in items:
            problems.append(f"{where}: duplicate id")
        if entry["topic"] not in TOPICS:
            problems.append(f"{where}: unknown topic {entry['topic']!r}")
        bad = [a for a in entry["audiences"] if a not in AUDIENCES]
        if bad:
            problems.append(f"{where}: unknown audience(s) {bad}")
        for lang in ("vi", "en"):
            if len(entry[lang]) > limit:
                problems.append(f"{where}: {lang} text has {len(entry[lang])} characters, "
                                f"more than {limit}")
        image = entry.get("image")
        if image and not str(image).startswith("https://"):
            problems.append(f"{where}: image must be a public https URL")
        items[entry["id"]] = Item(entry["id"], entry["topic"], tuple(entry["audiences"]),
                                  entry["vi"], entry["en"], image)
    return items, problems


@cache
def library() -> dict[str, Item]:
    """Return the content library, refusing to start with broken content."""
    items, problems = check_items(_load("library.toml").get("items", []))
    if problems:
        raise ContentError("; ".join(problems))
    return items


@cache
def calendar() -> dict[str, CalendarEntry]:
    """Return the built-in campaign calendar."""
    entries: dict[str, CalendarEntry] = {}
    problems = []
    for raw in _load("calendar.toml").get("campaigns", []):
        entry = CalendarEntry(raw["id"], raw["name"], raw["schedule"], tuple(raw["roles"]),
                              tuple(raw["content"]))
        unknown = [c for c in entry.content if c not in library()]
        if unknown:
            problems.append(f"calendar {entry.id}: unknown content {unknown}")
        if any(r not in ROLES for r in entry.roles):
            problems.append(f"calendar {entry.id}: unknown role in {entry.roles}")
        try:
            validate_schedule(entry.schedule)
        except ScheduleError as exc:
            problems.append(f"calendar {entry.id}: {exc}")
        entries[entry.id] = entry
    if problems:
        raise ContentError("; ".join(problems))
    return entries
