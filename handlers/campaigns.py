"""Admins in the chat: create a campaign (with preview and reach), list and manage them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.services import campaigns as svc
from bot.services.content import TOPICS, Item, library
from storage.models import Campaign, CampaignRun, CampaignStatus

FLOW = "campaign"
AUDIENCES = {"parents": ["parent"], "staff": ["liaison"], "schools": ["parent", "liaison"],
             "everyone": ["parent", "liaison", "officer"]}



@choice_data(FLOW)
@dataclass(frozen=True)
class CampaignStep(ChoiceData):
    """An answer in the creation flow: content, audience, when; then start or discard."""

    action: str
    value: str | None = None


@choice_data("camp")
@dataclass(frozen=True)
class CampaignAction(ChoiceData):
    """Show, pause, resume or cancel one of the admin's campaigns."""

    action: str
    campaign_id: int


def _admin_areas(ctx: Context) -> list[int]:
    return svc.admin_areas(ctx.roles)


async def start(ctx: Context) -> None:
    """/campaign: pick content, audience and time; see a preview and the reach; confirm."""
    if not _admin_areas(ctx):
        ctx.reply("campaign.not_admin")
        return
    ctx.goto(FLOW, "audience")
    ctx.reply("campaign.choose_audience", choices=[
        CampaignStep("audience", a).choice(ctx.t(f"campaign.audience.{a}")) for a in AUDIENCES])


def _suitable(audience: str, topic: str | None = None) -> list[Item]:
    """The library items written for everyone this audience reaches (in a topic): the chat
    offers only those, so a parents' campaign never carries a tip written for teachers."""
    return [item for item in library().values() if item.suits(AUDIENCES[audience])
            and (topic is None or item.topic == topic)]


async def flow(ctx: Context) -> None:
    """One step of the creation flow: audience, topic, content, when; then confirm."""
    chosen = ctx.chosen(CampaignStep)
    action, value = (chosen.action, chosen.value) if chosen else (None, None)
    step = ctx.conversation.step
    data = ctx.conversation.data or {}
    t = ctx.t
    if step == "audience" and action == "audience" and value in AUDIENCES:
        ctx.update(audience=value)
        ctx.conversation.step = "topic"
        topics = [topic for topic in TOPICS if _suitable(value, topic)]
        ctx.reply("campaign.choose_topic", choices=[
            CampaignStep("topic", topic).choice(t(f"topic.{topic}")) for topic in topics])
    elif step == "topic" and action == "topic" and value in TOPICS:
        ctx.update(topic=value)
        ctx.conversation.step = "content"
        ctx.reply("campaign.choose_content", choices=[
            CampaignStep("content", item.id).choice(item.title(ctx.language))
            for item in _suitable(data["audience"], value)])
    elif step == "content" and action == "content" and value in {
            item.id for item in _suitable(data["audience"], data.get("topic"))}:
        ctx.update(content=value)
        ctx.conversation.step = "when"
        ctx.reply("campaign.choose_when", choices=[
            CampaignStep("when", w).choice(t(f"campaign.when.{w}"))
            for w in ("now", "tomorrow", "weekly")])
    elif step == "when" and action == "when" and value:
        await _preview(ctx, value)
    elif step == "confirm" and action == "start":
        campaign = await ctx.session.get(Campaign, ctx.conversation.data["campaign_id"])
        if campaign is None or campaign.status != CampaignStatus.DRAFT:
            ctx.clear()
            ctx.reply("error.stale_choice")
            return
        await svc.change(ctx.session, campaign, "start", now=ctx.clock.now(),
                         tz=ctx.settings.tz)
        ctx.clear()
        ctx.reply("campaign.started", id=campaign.id)
    elif step == "confirm" and action == "discard":
        campaign = await ctx.session.get(Campaign, ctx.conversation.data["campaign_id"])
        if campaign is not None and campaign.status == CampaignStatus.DRAFT:
            await ctx.session.delete(campaign)
        ctx.clear()
        ctx.reply("campaign.discarded")
    else:
        ctx.reply("error.stale_choice")


async def _preview(ctx: Context, when: str) -> None:
    data = ctx.conversation.data
    now = ctx.clock.now()
    local = now.astimezone(ctx.settings.tz)
    if when == "now":
        schedule, starts = "once", now
    elif when == "tomorrow":
        schedule = "once"
        starts = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    elif when == "weekly":
        schedule, starts = "cron: 0 9 * * mon", now
    else:
        ctx.reply("error.stale_choice")
        return
    item = library()[data["content"]]
    campaign = svc.new_campaign(svc.Draft(
        name=item.text(ctx.language)[:60], area_ids=_admin_areas(ctx),
        roles=AUDIENCES[data["audience"]], content_ids=[item.id], schedule=schedule,
        starts_at=starts), now=now, person_id=ctx.person.id if ctx.person else None)
    ctx.session.add(campaign)
    await ctx.session.flush()
    reach = await svc.reach(ctx.session, campaign, ctx.settings.default_language)
    sample = svc.message_for(campaign, item, ctx.language)
    ctx.update(campaign_id=campaign.id)
    ctx.conversation.step = "confirm"
    ctx.reply("campaign.preview", name=campaign.name)
    ctx.replies.append(sample)
    ctx.reply("campaign.reach", reachable=reach.reachable, targeted=reach.targeted,
              opted_out=reach.opted_out, schedule=ctx.t(f"campaign.when.{when}"),
              quiet=ctx.settings.quiet_hours, choices=[
                  CampaignStep("start").choice(ctx.t("campaign.confirm")),
                  CampaignStep("discard").choice(ctx.t("campaign.discard"))])


async def list_campaigns(ctx: Context) -> None:
    """/campaigns: the campaigns of the admin's areas, each with its latest outreach."""
    areas = set(_admin_areas(ctx))
    if not areas:
        ctx.reply("campaign.not_admin")
        return
    rows = await svc.within(ctx.session, (await ctx.session.execute(
        select(Campaign).order_by(Campaign.id.desc()).limit(50))).scalars(), sorted(areas))
    if not rows:
        ctx.reply("campaigns.none")
        return
    t = ctx.t
    lines = [t("campaigns.header")] + [
        t("campaigns.line", id=c.id, name=c.name, status=t(f"campaign.status.{c.status}"),
          runs=c.runs_done) for c in rows[:15]]
    ctx.reply_text("\n".join(lines), choices=[
        CampaignAction("show", c.id).choice(f"#{c.id}") for c in rows[:8]])


async def manage(ctx: Context) -> None:
    """camp:<show|pause|resume|cancel>:<id> from the list, for the admin's own campaigns."""
    chosen = ctx.chosen(CampaignAction)
    campaign = await ctx.session.get(Campaign, chosen.campaign_id) if chosen else None
    if campaign is None or not await svc.in_scope(ctx.session, campaign, _admin_areas(ctx)):
        ctx.reply("campaign.not_admin")
        return
    action = chosen.action if chosen else None
    if action != "show":
        try:
            await svc.change(ctx.session, campaign, action or "", now=ctx.clock.now(),
                             tz=ctx.settings.tz)
        except svc.CampaignProblem as problem:
            ctx.reply_text(problem.text(ctx.t))
            return
    if action != "show":
        ctx.reply("campaign.done", id=campaign.id,
                  status=ctx.t(f"campaign.status.{campaign.status}"))
        return
    t = ctx.t
    lines = [t("campaign.stats.header", id=campaign.id, name=campaign.name,
               status=t(f"campaign.status.{campaign.status}"))]
    runs = (await ctx.session.execute(select(CampaignRun).where(
        CampaignRun.campaign_id == campaign.id).order_by(CampaignRun.id.desc()).limit(5)
    )).scalars().all()
    for run in runs:
        total = svc.total(await svc.run_stats(ctx.session, run.id))
        lines.append(t("campaign.stats.run", when=run.scheduled_for.astimezone(
            ctx.settings.tz).strftime("%H:%M %d/%m/%Y"), **vars(total)))
    ctx.reply_text("\n".join(lines), choices=[
        CampaignAction(a, campaign.id).choice(t(f"campaign.action.{a}"))
        for a in svc.allowed_actions(campaign)])


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("campaign")(start)
    router.command("campaigns")(list_campaigns)
    router.flow(FLOW)(flow)
    router.choice(CampaignAction)(manage)
