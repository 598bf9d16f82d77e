"""/stats in the chat: a committee admin or a chief picks a period (and an area, if they hold
several) and receives the summary, the chart and the workbook a moment later."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.services import periods, stat_reports
from handlers.services import actor, case_service

FLOW = "stats"
PERIODS = ("this_quarter", "last_quarter", "half", "year", "custom")
_RANGE = re.compile(r"^\s*(\S+)\s*(?:-|–|—|đến|to)\s*(\S+)\s*$", re.IGNORECASE)


@choice_data(FLOW)
@dataclass(frozen=True)
class StatsChoice(ChoiceData):
    """A step of /stats: the period, then the area."""

    step: str  # period | area
    value: str


async def start(ctx: Context) -> None:
    """/stats: refused politely to anyone who is not an admin or a chief."""
    scope = await case_service(ctx).statistics_scope(actor(ctx))
    if not scope:
        ctx.reply("stats.not_allowed")
        return
    ctx.goto(FLOW, "period")
    ctx.reply("stats.choose_period", choices=[
        StatsChoice("period", p).choice(ctx.t(f"stats.choice.{p}")) for p in PERIODS])


def _period(ctx: Context, which: str) -> periods.Period | None:
    cutoff = ctx.settings.report_cutoff_day
    today = ctx.clock.now().astimezone(ctx.settings.tz).date()
    if which == "this_quarter":
        return periods.containing("quarter", today, cutoff)
    if which == "last_quarter":
        return periods.previous(periods.containing("quarter", today, cutoff), cutoff)
    if which in ("half", "year"):
        return periods.containing(which, today, cutoff)
    return None


async def flow(ctx: Context) -> None:
    """Take the period (a button, or a typed range), then the area."""
    chosen = ctx.chosen(StatsChoice)
    step = ctx.conversation.step
    if step == "period" and chosen is not None and chosen.step == "period":
        if chosen.value == "custom":
            ctx.conversation.step = "range"
            ctx.reply("stats.custom_prompt")
            return
        period = _period(ctx, chosen.value)
        if period is None:
            ctx.reply("error.stale_choice")
            return
        await _area_or_send(ctx, period)
    elif step == "range" and chosen is None and ctx.inbound.text:
        match = _RANGE.match(ctx.inbound.text)
        try:
            if match is None:
                raise periods.PeriodError("date_unreadable", text=ctx.inbound.text)
            period = periods.custom(periods.parse_date(match[1]), periods.parse_date(match[2]))
        except periods.PeriodError:
            ctx.reply("stats.custom_bad")
            return
        await _area_or_send(ctx, period)
    elif step == "area" and chosen is not None and chosen.step == "area":
        data = ctx.conversation.data or {}
        period = periods.Period(data["kind"], data["label"],
                                periods.parse_date(data["first"]),
                                periods.parse_date(data["last"]))
        scope = {str(a.id): a for a in await case_service(ctx).statistics_scope(actor(ctx))}
        if chosen.value not in scope:
            ctx.reply("error.stale_choice")
            return
        await _send(ctx, period, scope[chosen.value].id)
    elif chosen is not None:
        ctx.reply("error.stale_choice")
    else:  # text where a button was expected: say so, the buttons stay open
        ctx.reply("stats.use_buttons")
        ctx.conversation.choices = ctx.offered
        ctx.keep_choices = True


async def _area_or_send(ctx: Context, period: periods.Period) -> None:
    scope = await case_service(ctx).statistics_scope(actor(ctx))
    if len(scope) == 1:
        await _send(ctx, period, scope[0].id)
        return
    ctx.update(kind=period.kind, label=period.label, first=period.first.isoformat(),
               last=period.last.isoformat())
    ctx.conversation.step = "area"
    ctx.reply("stats.choose_area", choices=[
        StatsChoice("area", str(a.id)).choice(a.name) for a in scope])


async def _send(ctx: Context, period: periods.Period, area_id: int) -> None:
    assert ctx.person is not None
    await stat_reports.request(
        ctx.session, key=f"ask:{ctx.inbound.channel}:{ctx.inbound.event_id}",
        person_id=ctx.person.id, account_id=ctx.account.id, area_id=area_id, period=period,
        now=ctx.clock.now())
    ctx.clear()
    ctx.reply("stats.preparing")


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("stats")(start)
    router.flow(FLOW)(flow)
