"""Admins in the chat: create a campaign (with preview and reach), list and manage them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.services import campaigns as svc
from bot.services.content import library
from storage.areas import subtree
from storage.models import Campaign, CampaignRun, CampaignStatus, Role

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
    return sorted({r.area_id for r in ctx.roles if r.role == Role.ADMIN and r.area_id})


async def start(ctx: Context) -> None:
    """/campaign: pick content, audience and time; see a preview and the reach; confirm."""
    if not _admin_areas(ctx):
        ctx.reply("campaign.not_admin")
        return
    ctx.goto(FLOW, "content")
    ctx.reply("campaign.choose_content", choices=[
        CampaignStep("content", item.id).choice(item.title(ctx.language))
        for item in library().values()])


async def flow(ctx: Context) -> None:
    """One step of the creation flow."""
    chosen = ctx.chosen(CampaignStep)
    action, value = (chosen.action, chosen.value) if chosen else (None, None)
    step = ctx.conversation.step
    t = ctx.t
    if step == "content" and action == "content" and value in library():
        ctx.update(content=value)
        ctx.conversation.step = "audience"
        ctx.reply("campaign.choose_audience", choices=[
            CampaignStep("audience", a).choice(t(f"campaign.audience.{a}")) for a in AUDIENCES])
    elif step == "audience" and action == "audience" and value in AUDIENCES:
        ctx.update(audience=value)
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
        svc.activate(campaign, ctx.clock.now(), ctx.settings.tz)
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
    campaign = Campaign(
        name=item.text(ctx.language)[:60], status=CampaignStatus.DRAFT,
        area_ids=_admin_areas(ctx), roles=AUDIENCES[data["audience"]], content_ids=[item.id],
        schedule=schedule, starts_at=starts, runs_done=0,
        created_by_person_id=ctx.person.id if ctx.person else None, created_at=now)
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
    rows = [c for c in (await ctx.session.execute(
        select(Campaign).order_by(Campaign.id.desc()).limit(50))).scalars()
        if set(c.area_ids) <= await _scope(ctx, areas)]
    if not rows:
        ctx.reply("campaigns.none")
        return
    t = ctx.t
    lines = [t("campaigns.header")] + [
        t("campaigns.line", id=c.id, name=c.name, status=t(f"campaign.status.{c.status}"),
          runs=c.runs_done) for c in rows[:15]]
    ctx.reply_text("\n".join(lines), choices=[
        CampaignAction("show", c.id).choice(f"#{c.id}") for c in rows[:8]])


async def _scope(ctx: Context, areas: set[int]) -> set[int]:
    return set(await subtree(ctx.session, sorted(areas)))


async def manage(ctx: Context) -> None:
    """camp:<show|pause|resume|cancel>:<id> from the list, for the admin's own campaigns."""
    chosen = ctx.chosen(CampaignAction)
    areas = set(_admin_areas(ctx))
    campaign = await ctx.session.get(Campaign, chosen.campaign_id) if chosen else None
    if not areas or campaign is None or not set(campaign.area_ids) <= await _scope(ctx, areas):
        ctx.reply("campaign.not_admin")
        return
    now = ctx.clock.now()
    action = chosen.action if chosen else None
    if action == "pause" and campaign.status == CampaignStatus.ACTIVE:
        campaign.status = CampaignStatus.PAUSED
        await svc.hold(ctx.session, campaign.id, release=False)
    elif action == "resume" and campaign.status in (CampaignStatus.PAUSED,
                                                       CampaignStatus.DRAFT):
        await svc.hold(ctx.session, campaign.id, release=True)
        svc.activate(campaign, now, ctx.settings.tz)
    elif action == "cancel" and campaign.status not in (CampaignStatus.CANCELLED,):
        campaign.status = CampaignStatus.CANCELLED
        campaign.next_run_at = None
        await svc.drop_unsent(ctx.session, campaign.id, now)
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
        stats = await svc.run_stats(ctx.session, run.id)
        total = svc.AreaStats()
        for s in stats.values():
            for name in ("targeted", "sent", "failed", "unreachable", "opted_out", "waiting"):
                setattr(total, name, getattr(total, name) + getattr(s, name))
        lines.append(t("campaign.stats.run", when=run.scheduled_for.astimezone(
            ctx.settings.tz).strftime("%H:%M %d/%m/%Y"), **vars(total)))
    ctx.reply_text("\n".join(lines), choices=[
        CampaignAction(a, campaign.id).choice(t(f"campaign.action.{a}"))
        for a in ("pause", "resume", "cancel")])


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("campaign")(start)
    router.command("campaigns")(list_campaigns)
    router.flow(FLOW)(flow)
    router.choice(CampaignAction)(manage)
