"""Consent to awareness messages: /stop, /start again, /topics (topics and frequency)."""

from __future__ import annotations

from bot.core.context import Context, Router
from bot.core.messages import Choice
from bot.services.content import TOPICS

FREQUENCIES = ("weekly", "monthly")


async def stop(ctx: Context) -> None:
    """/stop: no more awareness messages (alerts and one's own cases still arrive)."""
    if ctx.person is None:
        ctx.reply("me.stranger")
        return
    ctx.person.campaigns_stopped = True
    ctx.reply("campaign.stopped")


def resume_if_stopped(ctx: Context) -> bool:
    """Called by /start: a person who had stopped gets messages again; tell whether it did."""
    if ctx.person is not None and ctx.person.campaigns_stopped:
        ctx.person.campaigns_stopped = False
        ctx.reply("campaign.resumed")
        return True
    return False


def _menu(ctx: Context) -> list[Choice]:
    t, person = ctx.t, ctx.person
    assert person is not None
    excluded = set(person.topics_excluded or [])
    items = [Choice(f"topics:toggle:{topic}",
                    f"{'⬜' if topic in excluded else '✅'} {t(f'topic.{topic}')}")
             for topic in TOPICS]
    current = person.campaign_frequency or "weekly"
    items += [Choice(f"topics:freq:{f}", f"{'🔘' if f == current else '⚪'} {t(f'frequency.{f}')}")
              for f in FREQUENCIES]
    return items


async def topics(ctx: Context) -> None:
    """/topics: choose which topics to receive and how often."""
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    ctx.reply("topics.prompt", choices=_menu(ctx))


async def topics_choice(ctx: Context) -> None:
    """Toggle a topic or set the frequency, then show the updated choices."""
    parts = (ctx.choice or "").split(":")
    person = ctx.person
    if person is None or len(parts) != 3:
        ctx.reply("error.stale_choice")
        return
    if parts[1] == "toggle" and parts[2] in TOPICS:
        excluded = set(person.topics_excluded or [])
        excluded ^= {parts[2]}
        person.topics_excluded = sorted(excluded)
    elif parts[1] == "freq" and parts[2] in FREQUENCIES:
        person.campaign_frequency = None if parts[2] == "weekly" else parts[2]
    else:
        ctx.reply("error.stale_choice")
        return
    ctx.reply("topics.saved", choices=_menu(ctx))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("stop")(stop)
    router.command("topics")(topics)
    router.choice("topics")(topics_choice)
