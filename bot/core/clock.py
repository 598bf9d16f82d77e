"""Injected time: the app asks a Clock, tests move a FakeClock instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class Clock:
    """The real wall clock, always timezone-aware UTC."""

    def now(self) -> datetime:
        """Return the current time."""
        return datetime.now(UTC)


class FakeClock(Clock):
    """A clock that only moves when told to; listeners hear every move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 9, 7, 1, 0, tzinfo=UTC)
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        """Return the frozen time."""
        return self._now

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call listener after every advance (workers re-check what became due)."""
        self._listeners.append(listener)

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by a timedelta or a number of seconds."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now += delta
        for listener in list(self._listeners):
            listener()


class ScaledClock(Clock):
    """The wall clock, or (the demo's "fast clock") time that runs `factor` times faster
    from the moment it was switched; it never jumps back."""

    def __init__(self) -> None:
        self._real = self._shown = datetime.now(UTC)
        self.factor = 1.0

    def now(self) -> datetime:
        """Return the current (possibly hurried) time."""
        return self._shown + (datetime.now(UTC) - self._real) * self.factor

    def set_factor(self, factor: float) -> None:
        """Run factor times faster from now on (1: real time)."""
        self._shown = self.now()
        self._real = datetime.now(UTC)
        self.factor = factor
