"""Commands everyone has: /start, /help, /me, /language, /menu, /cancel."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from bot.core.channel import STRANGER_COMMANDS
from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context, Router
from bot.core.messages import Choice
from bot.core.settings import LANGUAGES
from bot.services.codes import looks_like_code
from handlers import cases, registration, report, stats, web
from handlers.consent import resume_if_stopped
from handlers.menus import MenuChoice, describe_role, main_menu
from storage.models import Account, Duty, Role


@choice_data("lang")
@dataclass(frozen=True)
class LanguageChoice(ChoiceData):
    """A language to read the bot in."""

    code: str


async def start(ctx: Context) -> None:
    """Greet; a deep-link payload (/start CODE) is an invitation or school code."""
    if ctx.inbound.args:
        await registration.redeem(ctx, ctx.inbound.args[0])
        return
    if resume_if_stopped(ctx):
        return
    if ctx.person and ctx.roles:
        ctx.clear()
        ctx.reply("welcome.registered", choices=main_menu(ctx))
    else:
        ctx.reply("welcome.stranger")


SCHOOL = (Role.LIAISON, Role.PARENT)
POLICE = (Role.OFFICER, Role.ADMIN)
REPORTERS = (*SCHOOL, Role.PUBLIC)  # a school's public page: report, follow it, nothing else
# Each command of /help and who is shown it: a parent never reads about /offduty.
HELP_LINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("report", REPORTERS), ("mycases", REPORTERS), ("cases", POLICE), ("case", POLICE),
    ("offduty", (Role.OFFICER,)), ("alerts", (Role.OFFICER,)), ("stats", ("chief", Role.ADMIN)),
    ("campaign", (Role.ADMIN,)), ("web", POLICE), ("topics", SCHOOL), ("forget", (Role.PARENT,)),
    ("link", (*SCHOOL, *POLICE)), ("me", (*SCHOOL, *POLICE)), ("cancel", (*REPORTERS, *POLICE)),
)


def _commands_for(ctx: Context) -> list[str]:
    """The commands this person's roles can use, in /help's order."""
    held = {r.role for r in ctx.roles} | {"chief" for r in ctx.roles if r.duty == Duty.CHIEF}
    return [command for command, who in HELP_LINES if held & set(who)]


def command_menu(ctx: Context) -> list[tuple[str, str]]:
    """The messenger's command menu for this person: /help's commands, in their language."""
    names: list[str] = list(STRANGER_COMMANDS)
    if ctx.roles:
        names = _commands_for(ctx)
        if "offduty" in names:
            names.insert(names.index("offduty") + 1, "onduty")
        names += ["menu", "help", "language"]
    return [(name, ctx.t(f"command.{name}")) for name in names]


def help_text(ctx: Context) -> str:
    """/help for this person: what their roles can do, then the hotlines; a stranger reads
    how to join."""
    t = ctx.t
    if not ctx.roles:
        return "\n\n".join([t("help.stranger"), t("help.hotlines")])
    lines = [t(f"help.cmd.{command}") for command in _commands_for(ctx)]
    lines += [t("help.cmd.menu"), t("help.cmd.language")]
    return "\n\n".join([t("help.intro"), "\n".join(lines), t("help.hotlines")])


async def help_(ctx: Context) -> None:
    """Show what this person can do here, and the hotlines."""
    ctx.reply_text(help_text(ctx))


async def me(ctx: Context) -> None:
    """Tell a person who the bot thinks they are."""
    t = ctx.t
    if not ctx.person or not ctx.roles:
        ctx.reply("me.stranger")
        return
    lines = [t("me.header", name=ctx.person.name or t("me.no_name"))]
    lines += [describe_role(ctx, r) for r in ctx.roles]
    lines.append(t("me.language", language=t(f"language.{ctx.language}")))
    result = await ctx.session.execute(
        select(Account.channel).where(Account.person_id == ctx.person.id).distinct())
    channels = sorted(result.scalars())
    lines.append(t("me.channels", channels=", ".join(t(f"channel.{c}") for c in channels)))
    ctx.reply_text("\n".join(lines), choices=main_menu(ctx))


async def language(ctx: Context) -> None:
    """Offer the languages."""
    ctx.reply("language.prompt",
              choices=[LanguageChoice(code).choice(ctx.t(f"language.{code}"))
                       for code in LANGUAGES])


async def choose_language(ctx: Context) -> None:
    """Switch the person's (or the stranger's account's) language."""
    chosen = ctx.chosen(LanguageChoice)
    code = chosen.code if chosen else None
    if code not in LANGUAGES:
        ctx.reply("error.stale_choice")
        return
    if ctx.person:
        ctx.person.language = code
    ctx.account.language = code
    ctx.reply("language.set", choices=main_menu(ctx) if ctx.roles else None)


async def menu(ctx: Context) -> None:
    """Show the main menu (strangers get told how to join)."""
    if not ctx.roles:
        ctx.reply("welcome.stranger")
        return
    ctx.reply("menu.prompt", choices=main_menu(ctx))


async def menu_choice(ctx: Context) -> None:
    """Run the main-menu item that was chosen."""
    chosen = ctx.chosen(MenuChoice)
    item = chosen.item if chosen else None
    action = {"help": help_, "me": me, "language": language, "report": report.start,
              "mycases": cases.my_cases, "cases": cases.list_cases,
              "stats": stats.start, "web": web.web}.get(item)
    if action is None:
        ctx.reply("error.stale_choice")
        return
    await action(ctx)


async def cancel(ctx: Context) -> None:
    """Leave whatever flow the person is in."""
    if ctx.conversation.flow == report.FLOW:
        await report.cancel(ctx)
    elif ctx.conversation.flow:
        ctx.clear()
        ctx.reply("cancel.done", choices=main_menu(ctx) if ctx.roles else None)
    else:
        ctx.reply("cancel.nothing")


async def unknown_command(ctx: Context) -> None:
    """Answer a command the bot does not know."""
    ctx.reply("error.unknown_command")


async def plain_text(ctx: Context) -> None:
    """Outside any flow: strangers may be typing a code; members get the menu."""
    text = (ctx.inbound.text or "").strip()
    if not ctx.roles:
        if looks_like_code(text):
            await registration.redeem(ctx, text)
        else:  # a greeting, a photo, a sticker: how to join is what a stranger needs
            ctx.reply("welcome.stranger")
        return
    # A member may join another school with a code, but "xem sau" is words, not a code:
    # from members, only what is typed the way codes are printed counts as one.
    if looks_like_code(text) and " " not in text and (
            text.isupper() or any(ch.isdigit() for ch in text)):
        await registration.redeem(ctx, text)
        return
    if ctx.inbound.unsupported or not text:
        ctx.reply("error.unsupported", choices=main_menu(ctx))
        return
    if await cases.answer_typed_directly(ctx, text):
        return
    if ctx.offered:  # words that are none of the options just offered: offer them again
        ctx.reply("choices.again", [Choice(key, label) for key, label in ctx.offered])
        return
    ctx.reply("menu.prompt", choices=main_menu(ctx))


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("start")(start)
    router.command("help")(help_)
    router.command("me")(me)
    router.command("language", "lang")(language)
    router.command("menu")(menu)
    router.command("cancel")(cancel)
    router.command("__unknown__")(unknown_command)
    router.choice(LanguageChoice)(choose_language)
    router.choice(MenuChoice)(menu_choice)
    router.default(plain_text)
    router.command_menu(command_menu)
