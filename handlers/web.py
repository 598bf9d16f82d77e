"""/web: an officer, chief or committee admin gets a one-time link to the web console."""

from __future__ import annotations

from bot.core.context import Context, Router
from bot.services import console


async def web(ctx: Context) -> None:
    """Send a sign-in link (single use, valid a few minutes); others are told the console
    is for the police and the committee, and that the chat does everything they need."""
    if not ctx.roles:
        ctx.reply("welcome.stranger")
        return
    if ctx.person is None or not console.may_use_console(ctx.person):
        ctx.reply("web.not_for_you")
        return
    settings = ctx.settings
    token = await console.issue_link(ctx.session, ctx.person, ctx.clock.now(),
                                     settings.console_link_minutes)
    ctx.reply("web.link", link=f"{settings.console_base}/console/in/{token}",
              minutes=f"{settings.console_link_minutes:g}")


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("web", "console")(web)
