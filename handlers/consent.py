"""Consent to awareness messages: /stop, /start again, /topics (topics and frequency)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.core.messages import Choice, Outbound
from bot.services import people
from bot.services.console import audit
from bot.services.content import TOPICS
from handlers.services import actor, case_service
from storage.models import Role

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


@choice_data("forget")
@dataclass(frozen=True)
class ForgetChoice(ChoiceData):
    """The answer to /forget's question: "yes" (erase me) or "no"."""

    answer: str


async def forget(ctx: Context) -> None:
    """/forget: a parent asks to be forgotten (bot/services/people.py); staff are managed by
    their directory, so they are told whom to ask."""
    if ctx.person is None or not ctx.roles:
        ctx.reply("me.stranger")
        return
    if any(r.role != Role.PARENT for r in ctx.roles):
        ctx.reply("forget.staff")
        return
    ctx.reply("forget.confirm", choices=[ForgetChoice("yes").choice(ctx.t("forget.yes")),
                                         ForgetChoice("no").choice(ctx.t("forget.no"))])


async def forget_choice(ctx: Context) -> None:
    """Erase the parent, or keep everything."""
    chosen = ctx.chosen(ForgetChoice)
    person = ctx.person
    if chosen is None or person is None or any(r.role != Role.PARENT for r in ctx.roles):
        ctx.reply("error.stale_choice")
        return
    if chosen.answer != "yes":
        ctx.reply("forget.kept")
        return
    now = ctx.clock.now()
    farewell = (ctx.account, Outbound(ctx.t("forget.done"), language=ctx.language),
                f"forget:{ctx.inbound.channel}:{ctx.inbound.event_id}")
    try:
        await people.erase(ctx.session, person, case_service(ctx),
                           actor(ctx), now, farewell=farewell)
    except people.StillReporting as exc:
        ctx.reply("forget.still_reporting", refs=", ".join(exc.refs))
        return
    await audit(ctx.session, None, "person_erased", f"person:{person.id}", now,
                via=ctx.inbound.channel)


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("forget")(forget)
    router.choice(ForgetChoice)(forget_choice)
    router.command("stop")(stop)
    router.command("topics")(topics)
    router.choice(TopicsChoice)(topics_choice)
