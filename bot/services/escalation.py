"""Escalation policies: who is told when nobody acknowledges, and when to nag about progress.

A policy has two severities (urgent, normal). Each is an ordered list of steps, the first
firing when the case is created; a step names one or more levels:

- ``primary``: the on-duty officers of the nearest area (walking up) that has any;
- ``backup`` / ``chief``: the nearest on-duty officers with that duty;
- ``admins``: the nearest area's admins; ``parent_admins``: the same, from the parent area up.

File format (TOML or JSON), every key optional except ``steps``::

    [urgent]
    steps = [{after = "0m", notify = ["primary"]}, {after = "5m", notify = ["backup"]}]
    repeat_last = 2          # fire the last step again this many times …
    repeat_every = "10m"     # … this far apart
    reminder_after = "2h"    # acknowledged but no progress: remind the officer
    revert_after = "2h"      # … still none after this: back to unacknowledged, escalate again
    resolution_target = "3d" # open longer than this: daily reminder, listed to the chief
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.i18n import Translator
from storage.models import Area, EscalationPolicy

LEVELS = ("primary", "backup", "chief", "admins", "parent_admins")
SEVERITIES = ("urgent", "normal")
_DURATION = re.compile(r"^\s*(\d+)\s*([^\W\d_]+)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks",
          # the console's users write durations the way they say them
          "giây": "seconds", "phút": "minutes", "giờ": "hours", "tiếng": "hours",
          "ngày": "days", "tuần": "weeks"}

DEFAULT: dict[str, Any] = {
    "urgent": {
        "steps": [{"after": "0m", "notify": ["primary", "backup"]},
                  {"after": "10m", "notify": ["chief"]},
                  {"after": "20m", "notify": ["parent_admins"]}],
        "repeat_last": 2, "repeat_every": "20m",
        "reminder_after": "2h", "revert_after": "2h", "resolution_target": "3d",
    },
    "normal": {
        "steps": [{"after": "0m", "notify": ["primary"]},
                  {"after": "60m", "notify": ["backup"]},
                  {"after": "4h", "notify": ["chief"]}],
        "repeat_last": 0, "repeat_every": "4h",
        "reminder_after": "24h", "revert_after": "24h", "resolution_target": "14d",
    },
}


@dataclass(frozen=True)
class Where:
    """Where in a policy a problem is: a severity, a step (from 1), a key."""

    severity: str | None = None
    step: int | None = None
    key: str | None = None

    def text(self, t: Translator) -> str:
        """urgent.steps[2].after in English (the file's own names); words in Vietnamese."""
        parts = [t(f"escalation.where.{self.severity}")] if self.severity else []
        if self.step is not None:
            parts.append(t("escalation.where.step", n=self.step))
        if self.key:
            parts.append(t(f"escalation.where.key.{self.key}"))
        return t("escalation.where.join").join(parts)


class PolicyError(ValueError):
    """A policy that cannot be used; `text(t)` says where and why in t's language (the CLI
    prints the English, the console the reader's)."""

    def __init__(self, key: str, where: Where | None = None, **values: object) -> None:
        self.key, self.where, self.values = key, where, values
        super().__init__(self.text(Translator("en")))

    def text(self, t: Translator) -> str:
        """The whole sentence: where, then why."""
        reason = t(f"escalation.problem.{self.key}", **self.values)
        return f"{self.where.text(t)}: {reason}" if self.where else reason


def duration(text: object, where: Where) -> timedelta:
    """Parse 0m, 90s, 5m, 4h, 3d, 2w (or 5 phút, 4 giờ, 3 ngày, 2 tuần)."""
    match = _DURATION.match(unicodedata.normalize("NFC", str(text)))
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise PolicyError("not_duration", where, text=str(text))
    return timedelta(**{unit: int(match.group(1))})


def _render(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0m"


@dataclass(frozen=True)
class Step:
    """Notify these levels this long after the case was created."""

    after: timedelta
    notify: tuple[str, ...]


@dataclass(frozen=True)
class Severity:
    """The escalation chain and the progress rules for one severity."""

    steps: tuple[Step, ...]
    repeat_last: int
    repeat_every: timedelta
    reminder_after: timedelta
    revert_after: timedelta
    resolution_target: timedelta

    def delay_before(self, index: int) -> timedelta | None:
        """Time between step index-1 and step index (repeats included); None when done."""
        if index < len(self.steps):
            previous = self.steps[index - 1].after if index > 0 else timedelta(0)
            return self.steps[index].after - previous
        if index < len(self.steps) + self.repeat_last:
            return self.repeat_every
        return None

    def step(self, index: int) -> Step:
        """Return step index; past the end, the last step (repeated)."""
        return self.steps[min(index, len(self.steps) - 1)]


@dataclass(frozen=True)
class Policy:
    """A whole policy: one Severity per severity."""

    urgent: Severity
    normal: Severity

    def for_case(self, urgent: bool) -> Severity:
        """Return the rules for a case of this urgency."""
        return self.urgent if urgent else self.normal


def parse(data: object) -> Policy:
    """Validate a policy (missing severities or keys fall back to the default)."""
    if not isinstance(data, dict):
        raise PolicyError("not_table")
    unknown = set(data) - set(SEVERITIES)
    if unknown:
        raise PolicyError("unknown_section", sections=", ".join(sorted(map(str, unknown))))
    return Policy(*(_severity(data.get(name), DEFAULT[name], name) for name in SEVERITIES))


def _severity(data: object, default: dict[str, Any], name: str) -> Severity:
    if data is None:
        data = default
    if not isinstance(data, dict):
        raise PolicyError("severity_not_table", Where(name))
    known = {"steps", "repeat_last", "repeat_every", "reminder_after", "revert_after",
             "resolution_target"}
    unknown = set(data) - known
    if unknown:
        raise PolicyError("unknown_key", Where(name), keys=", ".join(sorted(map(str, unknown))))
    raw_steps = data.get("steps", default["steps"])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PolicyError("no_steps", Where(name, key="steps"))
    steps: list[Step] = []
    for n, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict) or "after" not in raw or "notify" not in raw:
            raise PolicyError("step_incomplete", Where(name, n))
        notify = raw["notify"]
        notify = [notify] if isinstance(notify, str) else notify
        if not isinstance(notify, list) or not notify:
            raise PolicyError("no_level", Where(name, n, "notify"))
        bad = [level for level in notify if level not in LEVELS]
        if bad:
            raise PolicyError("unknown_level", Where(name, n, "notify"),
                              levels=", ".join(map(str, bad)), known=", ".join(LEVELS))
        after = duration(raw["after"], Where(name, n, "after"))
        if steps and after < steps[-1].after:
            raise PolicyError("back_in_time", Where(name, n, "after"),
                              after=_render(after), before=_render(steps[-1].after))
        steps.append(Step(after, tuple(notify)))
    repeat_last = data.get("repeat_last", default["repeat_last"])
    if not isinstance(repeat_last, int) or isinstance(repeat_last, bool) or repeat_last < 0:
        raise PolicyError("repeat_last", Where(name, key="repeat_last"))

    def span(key: str) -> timedelta:
        value = duration(data.get(key, default[key]), Where(name, key=key))
        if value <= timedelta(0):
            raise PolicyError("not_positive", Where(name, key=key))
        return value

    return Severity(tuple(steps), repeat_last, span("repeat_every"), span("reminder_after"),
                    span("revert_after"), span("resolution_target"))


def to_dict(policy: Policy) -> dict[str, Any]:
    """Render a policy back to the file format."""
    out: dict[str, Any] = {}
    for name in SEVERITIES:
        sev: Severity = getattr(policy, name)
        out[name] = {
            "steps": [{"after": _render(s.after), "notify": list(s.notify)} for s in sev.steps],
            "repeat_last": sev.repeat_last, "repeat_every": _render(sev.repeat_every),
            "reminder_after": _render(sev.reminder_after),
            "revert_after": _render(sev.revert_after),
            "resolution_target": _render(sev.resolution_target),
        }
    return out


def load_file(path: Path) -> Policy:
    """Read and validate a .toml or .json policy file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError("file_unreadable", path=str(path), reason=exc.strerror) from exc
    if path.suffix.lower() not in (".json", ".toml"):
        raise PolicyError("file_kind")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError("file_syntax", name=path.name, detail=str(exc)) from exc
    return parse(data)


BUILT_IN = parse(DEFAULT)


async def effective(session: AsyncSession, area_id: int) -> tuple[Policy, Area | None]:
    """Return the policy that applies to an area and the area it is set on (None: built-in)."""
    current: int | None = area_id
    seen: set[int] = set()
    while current is not None and current not in seen:
        seen.add(current)
        row = await session.get(EscalationPolicy, current)
        if row is not None:
            return parse(row.policy), await session.get(Area, current)
        current = (await session.execute(
            select(Area.parent_id).where(Area.id == current))).scalar_one_or_none()
    return BUILT_IN, None


async def set_policy(session: AsyncSession, area: Area, policy: Policy | None,
                     now: datetime) -> None:
    """Make a policy the area's own (its sub-areas inherit it); None: inherit again."""
    row = await session.get(EscalationPolicy, area.id)
    if policy is None:
        if row is not None:
            await session.delete(row)
        return
    data = to_dict(policy)
    if row is None:
        session.add(EscalationPolicy(area_id=area.id, policy=data, updated_at=now))
    else:
        row.policy, row.updated_at = data, now
