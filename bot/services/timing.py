"""When messages may go: campaign schedules ("once", cron, RRULE) and quiet hours."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from dateutil.rrule import rrulestr

_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class ScheduleError(ValueError):
    """A schedule that cannot be read."""


def validate_schedule(schedule: str) -> None:
    """Check that a schedule string can be used ("once", "cron: …" or "rrule: …")."""
    kind, _, spec = schedule.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "once" and not spec.strip():
            return
        if kind == "cron":
            CronTrigger.from_crontab(spec.strip())
            return
        if kind == "rrule":
            rrulestr(spec.strip())
            return
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"cannot read the schedule {schedule!r}: {exc}") from exc
    raise ScheduleError(f"schedule must be 'once', 'cron: …' or 'rrule: …', not {schedule!r}")


def next_run(schedule: str, after: datetime, starts_at: datetime, tz: ZoneInfo) -> datetime | None:
    """Return the first run strictly after `after` (None when the schedule has no more)."""
    kind, _, spec = schedule.partition(":")
    kind = kind.strip().lower()
    floor = max(after, starts_at - timedelta(seconds=1))
    if kind == "once":
        return starts_at if starts_at > after else None
    if kind == "cron":
        trigger = CronTrigger.from_crontab(spec.strip(), timezone=tz)
        fire = trigger.get_next_fire_time(None, floor + timedelta(seconds=1))
        return fire.astimezone(starts_at.tzinfo) if fire else None
    rule = rrulestr(spec.strip(), dtstart=starts_at.astimezone(tz).replace(microsecond=0))
    fire = rule.after(floor.astimezone(tz), inc=False)
    return fire.astimezone(starts_at.tzinfo) if fire else None


@dataclass(frozen=True)
class QuietHours:
    """Local hours when awareness messages wait (alerts never do)."""

    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo) -> QuietHours:
        """Read '21:00-07:00'."""
        match = _HHMM.match(text)
        if not match:
            raise ValueError(f"quiet hours must look like 21:00-07:00, not {text!r}")
        h1, m1, h2, m2 = map(int, match.groups())
        return cls(time(h1, m1), time(h2, m2), tz)

    def is_quiet(self, when: datetime) -> bool:
        """Tell whether when falls in the quiet hours."""
        local = when.astimezone(self.tz).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, when: datetime) -> datetime:
        """Return when itself, or the end of the quiet hours it falls in."""
        if not self.is_quiet(when):
            return when
        local = when.astimezone(self.tz)
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0,
                            microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(when.tzinfo)
