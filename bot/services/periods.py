"""Reporting periods as Vietnam's administrative reporting regime cuts them.

Decree 09/2019/NĐ-CP (Article 12) closes the figures of a periodic report on the 14th: a month
runs from the 15th of the month before to the 14th, a quarter from the 15th of the month
before it to the 14th of its last month, the first 6 months from 15 December of the year
before to 14 June, a year from 15 December of the year before to 14 December. The cut-off day
is a setting: 15 follows the decree, 1 gives calendar periods (a quarter from the 1st of its
first month to the last day of its last month).

A period is a range of local dates, both ends included; `bounds()` turns it into the UTC
instants [start, end) the database compares with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.core.i18n import Translator

DECREE_CUTOFF_DAY = 15
KINDS = ("month", "quarter", "half", "year", "custom")
_SPEC = re.compile(r"^(\d{4})(?:-(Q[1-4]|H[12]|\d{1,2}))?$", re.IGNORECASE)


class PeriodError(ValueError):
    """A period that cannot be read; `text(t)` says what was expected in t's language
    (str() is the English)."""

    def __init__(self, key: str, **values: object) -> None:
        self.key, self.values = key, values
        super().__init__(self.text(Translator("en")))

    def text(self, t: Translator) -> str:
        """The sentence, with the accepted forms when they help."""
        return t(f"period.problem.{self.key}", usage=t("period.problem.usage"), **self.values)


def _month_start(year: int, month: int, cutoff_day: int) -> date:
    """The first day of the reporting month `month` of `year`."""
    if cutoff_day == 1:
        return date(year, month, 1)
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return date(year, month, cutoff_day)


@dataclass(frozen=True)
class Period:
    """A reporting period: its kind, its label (2026-Q3) and its first and last local day."""

    kind: str
    label: str
    first: date
    last: date

    def bounds(self, tz: Any) -> tuple[datetime, datetime]:
        """The period as aware instants [start, end): local midnights, in the given zone."""
        start = datetime.combine(self.first, time(0), tzinfo=tz)
        end = datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=tz)
        return start, end

    def year_earlier(self) -> Period:
        """The same period a year before (for the year-on-year comparison)."""
        def back(day: date) -> date:
            try:
                return day.replace(year=day.year - 1)
            except ValueError:  # 29 February
                return day.replace(year=day.year - 1, day=28)
        label = self.label
        match = re.match(r"^(\d{4})(.*)$", label)
        if match and self.kind != "custom":
            label = f"{int(match[1]) - 1}{match[2]}"
        return Period(self.kind, label, back(self.first), back(self.last))

    def to_json(self) -> dict[str, str]:
        """The period as the JSON contract writes it."""
        return {"kind": self.kind, "label": self.label, "from": self.first.isoformat(),
                "to": self.last.isoformat()}


def month(year: int, number: int, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """Reporting month `number` of `year` (2026-11: 15 Oct – 14 Nov by default)."""
    first = _month_start(year, number, cutoff_day)
    nxt = _month_start(year + number // 12, number % 12 + 1, cutoff_day)
    return Period("month", f"{year}-{number:02d}", first, nxt - timedelta(days=1))


def _span(kind: str, label: str, year: int, first_month: int, months: int,
          cutoff_day: int) -> Period:
    first = month(year, first_month, cutoff_day).first
    last_month = first_month + months - 1
    return Period(kind, label, first, month(year, last_month, cutoff_day).last)


def quarter(year: int, number: int, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """Quarter `number` (1–4) of `year`."""
    return _span("quarter", f"{year}-Q{number}", year, 3 * number - 2, 3, cutoff_day)


def half(year: int, number: int, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """Half `number` (1–2) of `year`: H1 is the decree's "6 tháng"."""
    return _span("half", f"{year}-H{number}", year, 6 * number - 5, 6, cutoff_day)


def year(number: int, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """Reporting year `number` (2026: 15 Dec 2025 – 14 Dec 2026 by default)."""
    return _span("year", str(number), number, 1, 12, cutoff_day)


def custom(first: date, last: date) -> Period:
    """Any range of days, both included."""
    if last < first:
        raise PeriodError("reversed")
    if (last - first).days > 3 * 366:
        raise PeriodError("too_long")
    return Period("custom", f"{first.isoformat()}..{last.isoformat()}", first, last)


def parse(spec: str, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """Read 2026-Q3, 2026-H1, 2026 or 2026-11."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise PeriodError("unreadable", spec=spec)
    year_number, part = int(match[1]), (match[2] or "").upper()
    if not 2000 <= year_number <= 2100:
        raise PeriodError("year_range", year=year_number)
    if not part:
        return year(year_number, cutoff_day)
    if part.startswith("Q"):
        return quarter(year_number, int(part[1]), cutoff_day)
    if part.startswith("H"):
        return half(year_number, int(part[1]), cutoff_day)
    if not 1 <= int(part) <= 12:
        raise PeriodError("no_month", month=part)
    return month(year_number, int(part), cutoff_day)


def reporting_year_of(day: date, cutoff_day: int = DECREE_CUTOFF_DAY) -> int:
    """The reporting year a day falls in (16 December 2026 is in 2027 by the decree)."""
    if cutoff_day > 1 and (day.month, day.day) >= (12, cutoff_day):
        return day.year + 1
    return day.year


def containing(kind: str, day: date, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """The period of this kind (month, quarter, half, year) that contains the day."""
    number = reporting_year_of(day, cutoff_day)
    makers = {"month": (month, 12), "quarter": (quarter, 4), "half": (half, 2)}
    if kind == "year":
        return year(number, cutoff_day)
    if kind not in makers:
        raise ValueError(f"unknown period kind {kind!r}")  # a caller's mistake
    make, count = makers[kind]
    for n in range(1, count + 1):
        found = make(number, n, cutoff_day)
        if found.first <= day <= found.last:
            return found
    raise AssertionError(f"{day} falls in no {kind} of {number}")  # the periods tile a year


def previous(period: Period, cutoff_day: int = DECREE_CUTOFF_DAY) -> Period:
    """The period of the same kind just before this one."""
    return containing(period.kind, period.first - timedelta(days=1), cutoff_day)


def parse_date(text: str) -> date:
    """Read 2026-09-15 or 15/09/2026 (the way Vietnamese offices write dates)."""
    text = text.strip()
    try:
        if re.match(r"^\d{4}-\d{1,2}-\d{1,2}$", text):
            return date.fromisoformat("-".join(f"{int(p):02d}" for p in text.split("-")))
        match = re.match(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$", text)
        if match:
            return date(int(match[3]), int(match[2]), int(match[1]))
    except ValueError as exc:
        raise PeriodError("no_day", text=text) from exc
    raise PeriodError("date_unreadable", text=text)
