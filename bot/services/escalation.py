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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Area, EscalationPolicy

LEVELS = ("primary", "backup", "chief", "admins", "parent_admins")
SEVERITIES = ("urgent", "normal")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

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


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says where and why."""


def duration(text: object, where: str) -> timedelta:
    """Parse 0m, 90s, 5m, 4h, 3d, 2w."""
    match = _DURATION.match(str(text))
    if not match:
        raise PolicyError(f"{where}: {text!r} is not a duration (write e.g. 5m, 4h or 3d)")
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


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
        raise PolicyError("a policy is a table with [urgent] and/or [normal]")
    unknown = set(data) - set(SEVERITIES)
    if unknown:
        raise PolicyError(f"unknown section(s) {', '.join(sorted(unknown))}; "
                          "use urgent and normal")
    return Policy(*(_severity(data.get(name), DEFAULT[name], name) for name in SEVERITIES))


def _severity(data: object, default: dict[str, Any], name: str) -> Severity:
    if data is None:
        data = default
    if not isinstance(data, dict):
        raise PolicyError(f"{name}: must be a table")
    known = {"steps", "repeat_last", "repeat_every", "reminder_after", "revert_after",
             "resolution_target"}
    unknown = set(data) - known
    if unknown:
        raise PolicyError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
    raw_steps = data.get("steps", default["steps"])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PolicyError(f"{name}.steps: give at least one step")
    steps = []
    for n, raw in enumerate(raw_steps, start=1):
        where = f"{name}.steps[{n}]"
        if not isinstance(raw, dict) or "after" not in raw or "notify" not in raw:
            raise PolicyError(f"{where}: a step needs 'after' and 'notify'")
        notify = raw["notify"]
        notify = [notify] if isinstance(notify, str) else notify
        if not isinstance(notify, list) or not notify:
            raise PolicyError(f"{where}.notify: name at least one level")
        bad = [level for level in notify if level not in LEVELS]
        if bad:
            raise PolicyError(f"{where}.notify: unknown level(s) {', '.join(map(str, bad))}; "
                              f"use {', '.join(LEVELS)}")
        after = duration(raw["after"], f"{where}.after")
        if steps and after < steps[-1].after:
            raise PolicyError(f"{where}.after: steps must not go back in time "
                              f"({_render(after)} < {_render(steps[-1].after)})")
        steps.append(Step(after, tuple(notify)))
    repeat_last = data.get("repeat_last", default["repeat_last"])
    if not isinstance(repeat_last, int) or isinstance(repeat_last, bool) or repeat_last < 0:
        raise PolicyError(f"{name}.repeat_last: a whole number, 0 or more")

    def span(key: str) -> timedelta:
        value = duration(data.get(key, default[key]), f"{name}.{key}")
        if value <= timedelta(0):
            raise PolicyError(f"{name}.{key}: must be longer than zero")
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
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            raise PolicyError("the policy file must be .toml or .json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path.name}: {exc}") from exc
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
