"""One person, several messengers: /link joins accounts, /alerts picks where alerts go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.services.codes import PARENT_CODE_LENGTH, unused_code
from handlers.registration import person_channels, redeem
from storage.models import LinkCode

LINK_TTL = timedelta(minutes=15)



@choice_data("alerts")
@dataclass(frozen=True)
class AlertsChoice(ChoiceData):
    """The messenger that receives alerts and notices."""

    channel: str


async def link(ctx: Context) -> None:
    """/link: show a one-time code to send from the other messenger (or redeem one)."""
    if ctx.public_visitor:  # linking would name the anonymous reporter
        ctx.reply("public.no_codes")
        return
    if ctx.inbound.args:
        await redeem(ctx, ctx.inbound.args[0])
        return
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    now = ctx.clock.now()
    code = LinkCode(code=await unused_code(ctx.session, PARENT_CODE_LENGTH),
                    person_id=ctx.person.id, expires_at=now + LINK_TTL, created_at=now)
    ctx.session.add(code)
    ctx.reply("link.code", code=code.code, minutes=int(LINK_TTL.total_seconds() // 60))


async def alerts(ctx: Context) -> None:
    """/alerts: choose the messenger that receives alerts and notices."""
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    channels = await person_channels(ctx)
    if len(channels) < 2:
        ctx.reply("alerts.one_channel")
        return
    current = ctx.person.alert_channel
    ctx.reply("alerts.prompt", current=ctx.t(f"channel.{current}") if current
              else ctx.t("alerts.latest"),
              choices=[AlertsChoice(c).choice(ctx.t(f"channel.{c}")) for c in channels])


async def choose_alerts(ctx: Context) -> None:
    """Store the chosen messenger for alerts."""
    chosen = ctx.chosen(AlertsChoice)
    channel = chosen.channel if chosen else None
    if ctx.person is None or channel not in await person_channels(ctx):
        ctx.reply("error.stale_choice")
        return
    ctx.person.alert_channel = channel
    ctx.reply("alerts.set", channel=ctx.t(f"channel.{channel}"))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("link")(link)
    router.command("alerts")(alerts)
    router.choice(AlertsChoice)(choose_alerts)
