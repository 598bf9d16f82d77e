"""Officers going off duty (leave, night off) and coming back; routing skips them meanwhile."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.core.context import Context, Router
from storage.models import Role

_WHEN = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})(?:\s+(\d{1,2})[:h](\d{2}))?$")
_SPAN = re.compile(r"^(\d{1,4})\s*([hd])$", re.IGNORECASE)  # longer is never valid
LONGEST = timedelta(days=90)


def parse_until(text: str, now: datetime, tz: object) -> datetime | None:
    """Read '30/11/2026', '30/11/2026 18:00', '12h' or '3d' as an aware time after now."""
    text = text.strip().lower().removeprefix("until").removeprefix("đến").strip()
    span = _SPAN.match(text)
    if span:
        n, unit = int(span.group(1)), span.group(2)
        return now + (timedelta(hours=n) if unit == "h" else timedelta(days=n))
    match = _WHEN.match(text)
    if not match:
        return None
    day, month, year = int(match[1]), int(match[2]), int(match[3])
    year += 2000 if year < 100 else 0
    hour, minute = (int(match[4]), int(match[5])) if match[4] else (23, 59)
    try:
        return datetime(year, month, day, hour, minute, tzinfo=tz)  # type: ignore[arg-type]
    except ValueError:
        return None


async def off_duty(ctx: Context) -> None:
    """/offduty until DATE: stop receiving alerts until then."""
    if not ctx.has_role(Role.OFFICER) or ctx.person is None:
        ctx.reply("duty.officers_only")
        return
    now = ctx.clock.now()
    until = parse_until(" ".join(ctx.inbound.args), now, ctx.settings.tz)
    if until is None or until <= now or until - now > LONGEST:
        ctx.reply("duty.usage")
        return
    ctx.person.off_duty_until = until
    ctx.reply("duty.off", until=until.astimezone(ctx.settings.tz).strftime("%H:%M %d/%m/%Y"))


async def on_duty(ctx: Context) -> None:
    """/onduty: receive alerts again."""
    if not ctx.has_role(Role.OFFICER) or ctx.person is None:
        ctx.reply("duty.officers_only")
        return
    ctx.person.off_duty_until = None
    ctx.reply("duty.on")


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("offduty")(off_duty)
    router.command("onduty")(on_duty)
