"""One person, several messengers: /link joins accounts, /alerts picks where alerts go."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from bot.dispatch import Context, Router
from bot.messages import Choice
from storage.invitations import PARENT_CODE_LENGTH, unused_code
from storage.models import Account, LinkCode

_LOGGER = logging.getLogger(__name__)
LINK_TTL = timedelta(minutes=15)


async def link(ctx: Context) -> None:
    """/link: show a one-time code to send from the other messenger (or redeem one)."""
    if ctx.inbound.args:
        from handlers.registration import redeem

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


async def redeem_link(ctx: Context, code: LinkCode) -> None:
    """Attach this account to the person who asked for the code."""
    now = ctx.clock.now()
    if code.used_at is not None or code.expires_at <= now:
        ctx.reply("code.expired")
        return
    if ctx.person is not None and ctx.person.id != code.person_id and ctx.roles:
        ctx.reply("register.other_person")
        return
    code.used_at = now
    previous = ctx.person
    ctx.account.person_id = code.person_id
    await ctx.session.flush()
    await ctx.session.refresh(ctx.account, ["person"])
    if previous is not None and previous.id != code.person_id:
        _LOGGER.info("Account %s moved from an empty person to person %s", ctx.account.id,
                     code.person_id)
    ctx.clear()
    channels = await _channels(ctx)
    ctx.reply("link.done", channels=", ".join(ctx.t(f"channel.{c}") for c in channels))


async def _channels(ctx: Context) -> list[str]:
    assert ctx.person is not None
    rows = await ctx.session.execute(select(Account.channel).where(
        Account.person_id == ctx.person.id, Account.blocked_at.is_(None)).distinct())
    return sorted(rows.scalars())


async def alerts(ctx: Context) -> None:
    """/alerts: choose the messenger that receives alerts and notices."""
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    channels = await _channels(ctx)
    if len(channels) < 2:
        ctx.reply("alerts.one_channel")
        return
    current = ctx.person.alert_channel
    ctx.reply("alerts.prompt", current=ctx.t(f"channel.{current}") if current
              else ctx.t("alerts.latest"),
              choices=[Choice(f"alerts:{c}", ctx.t(f"channel.{c}")) for c in channels])


async def choose_alerts(ctx: Context) -> None:
    """Store the chosen messenger for alerts."""
    channel = (ctx.choice or "").partition(":")[2]
    if ctx.person is None or channel not in await _channels(ctx):
        ctx.reply("error.stale_choice")
        return
    ctx.person.alert_channel = channel
    ctx.reply("alerts.set", channel=ctx.t(f"channel.{channel}"))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("link")(link)
    router.command("alerts")(alerts)
    router.choice("alerts")(choose_alerts)
