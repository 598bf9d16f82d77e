"""Consent to awareness messages: /stop, /start again, /topics (topics and frequency)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.core.messages import Choice
from bot.services.content import TOPICS

FREQUENCIES = ("weekly", "monthly")


@choice_data("topics")
@dataclass(frozen=True)
class TopicsChoice(ChoiceData):
    """Toggle a topic, or set how often: ("toggle", topic) or ("freq", frequency)."""

    action: str
    value: str


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
    items = [TopicsChoice("toggle", topic).choice(
        f"{'⬜' if topic in excluded else '✅'} {t(f'topic.{topic}')}") for topic in TOPICS]
    current = person.campaign_frequency or "weekly"
    items += [TopicsChoice("freq", f).choice(
        f"{'🔘' if f == current else '⚪'} {t(f'frequency.{f}')}") for f in FREQUENCIES]
    return items


async def topics(ctx: Context) -> None:
    """/topics: choose which topics to receive and how often."""
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    ctx.reply("topics.prompt", choices=_menu(ctx))


async def topics_choice(ctx: Context) -> None:
    """Toggle a topic or set the frequency, then show the updated choices."""
    chosen = ctx.chosen(TopicsChoice)
    person = ctx.person
    if person is None or chosen is None:
        ctx.reply("error.stale_choice")
        return
    if chosen.action == "toggle" and chosen.value in TOPICS:
        excluded = set(person.topics_excluded or [])
        excluded ^= {chosen.value}
        person.topics_excluded = sorted(excluded)
    elif chosen.action == "freq" and chosen.value in FREQUENCIES:
        person.campaign_frequency = None if chosen.value == "weekly" else chosen.value
    else:
        ctx.reply("error.stale_choice")
        return
    ctx.reply("topics.saved", choices=_menu(ctx))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("stop")(stop)
    router.command("topics")(topics)
    router.choice(TopicsChoice)(topics_choice)
