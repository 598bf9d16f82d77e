"""Joining the network: invitation codes for staff, a school's public code for parents."""

from __future__ import annotations

import logging
import unicodedata
from datetime import timedelta

from sqlalchemy import select

from bot.core.context import Context, Router
from bot.services.codes import normalise_code
from bot.services.invitations import consume
from handlers.menus import main_menu
from storage.models import (
    Account,
    Invitation,
    LinkCode,
    Person,
    Redemption,
    Role,
    RoleAssignment,
    School,
)

_LOGGER = logging.getLogger(__name__)
FLOW = "register"
NAME_MAX = 100


async def redeem(ctx: Context, text: str) -> None:
    """Try text as an invitation or school code; count failures against brute force."""
    if ctx.public_visitor:  # a public report page's browser stays nobody in particular
        ctx.reply("public.no_codes")
        return
    if code_locked(ctx):
        return
    code = normalise_code(text)
    invitation = (await ctx.session.execute(
        select(Invitation).where(Invitation.code == code))).scalar_one_or_none()
    if invitation is not None:
        if not _usable(ctx, invitation):
            return
        if invitation.person_id is None and ctx.person is None:
            ctx.goto(FLOW, "name", invitation_id=invitation.id)
            ctx.reply("register.ask_name", role=ctx.t(f"role.{invitation.role}"),
                      scope=_scope_name(invitation))
            return
        await _complete(ctx, invitation, name=None)
        return
    school = (await ctx.session.execute(
        select(School).where(School.parent_code == code))).scalar_one_or_none()
    if school is not None:
        await _join_as_parent(ctx, school)
        return
    link = (await ctx.session.execute(
        select(LinkCode).where(LinkCode.code == code))).scalar_one_or_none()
    if link is not None:
        reset_failures(ctx)
        await redeem_link(ctx, link)
        return
    count_failure(ctx)


def code_locked(ctx: Context) -> bool:
    """Whether this account typed too many wrong codes lately (and say until when)."""
    account = ctx.account
    if account.code_locked_until and account.code_locked_until > ctx.clock.now():
        until = account.code_locked_until.astimezone(ctx.settings.tz)
        ctx.reply("code.locked", time=until.strftime("%H:%M"))
        return True
    return False


def _scope_name(invitation: Invitation) -> str:
    scope = invitation.school or invitation.area
    return scope.name if scope else "—"


def _usable(ctx: Context, invitation: Invitation) -> bool:
    now = ctx.clock.now()
    if invitation.revoked_at is not None or invitation.expires_at <= now:
        ctx.reply("code.expired")
        return False
    if invitation.used_count >= invitation.max_uses:
        ctx.reply("code.used")
        return False
    return True


def count_failure(ctx: Context) -> None:
    """One more wrong code: say so, or lock the account for a while."""
    now = ctx.clock.now()
    account = ctx.account
    window = timedelta(minutes=ctx.settings.code_lockout_minutes)
    if account.code_window_started_at is None or now - account.code_window_started_at > window:
        account.code_window_started_at = now
        account.code_failures = 0
    account.code_failures = (account.code_failures or 0) + 1
    if account.code_failures >= ctx.settings.code_failures_allowed:
        account.code_locked_until = now + window
        account.code_failures = 0
        account.code_window_started_at = None
        until = account.code_locked_until.astimezone(ctx.settings.tz)
        ctx.reply("code.locked", time=until.strftime("%H:%M"))
        return
    ctx.reply("code.invalid")


def reset_failures(ctx: Context) -> None:
    """A right code: the count starts again."""
    ctx.account.code_failures = 0
    ctx.account.code_window_started_at = None
    ctx.account.code_locked_until = None


async def ensure_person(ctx: Context, name: str | None) -> Person:
    """The account's person, made now if it has none."""
    if ctx.person is not None:
        return ctx.person
    person = Person(name=name, language=ctx.account.language, created_at=ctx.clock.now())
    ctx.session.add(person)
    await ctx.session.flush()
    ctx.account.person = person
    return person


async def ensure_role(ctx: Context, person: Person, role: str, *, area_id: int | None = None,
                       school_id: int | None = None, duty: str | None = None) -> bool:
    """Give person the role in scope; False if they already had it."""
    existing = (await ctx.session.execute(select(RoleAssignment).where(
        RoleAssignment.person_id == person.id, RoleAssignment.role == role,
        RoleAssignment.area_id.is_(None) if area_id is None else RoleAssignment.area_id == area_id,
        RoleAssignment.school_id.is_(None) if school_id is None
        else RoleAssignment.school_id == school_id,
    ))).scalar_one_or_none()
    if existing is not None:
        return False
    ctx.session.add(RoleAssignment(person=person, role=role, area_id=area_id, school_id=school_id,
                                   duty=duty, created_at=ctx.clock.now()))
    await ctx.session.flush()
    return True


async def _complete(ctx: Context, invitation: Invitation, name: str | None) -> None:
    now = ctx.clock.now()
    target = invitation.person
    if target is not None and ctx.person is not None and ctx.person.id != target.id \
            and ctx.roles:
        ctx.clear()
        ctx.reply("register.other_person")
        return
    # Use the code first, before linking anyone to anything: of two accounts redeeming one
    # code at the same moment, the second waits on the row lock (PostgreSQL) or the write
    # lock (SQLite) and then finds it used, with nothing of its own changed.
    if not await consume(ctx.session, invitation, now):
        ctx.clear()
        ctx.reply("code.used")
        return
    if target is not None:
        ctx.account.person = target
    else:
        target = await ensure_person(ctx, name)
    await ensure_role(ctx, target, invitation.role, area_id=invitation.area_id,
                       school_id=invitation.school_id, duty=invitation.duty)
    ctx.session.add(Redemption(invitation_id=invitation.id, account_id=ctx.account.id,
                               person_id=target.id, role=invitation.role, at=now))
    if target.language is None and ctx.account.language:
        target.language = ctx.account.language
    reset_failures(ctx)
    ctx.clear()
    await ctx.session.refresh(target, ["roles"])
    role = ctx.t(f"role.{invitation.role}")
    ctx.reply("register.done", choices=main_menu(ctx), role=role, scope=_scope_name(invitation))


async def _join_as_parent(ctx: Context, school: School) -> None:
    person = await ensure_person(ctx, None)
    reset_failures(ctx)
    ctx.clear()
    if not await ensure_role(ctx, person, Role.PARENT, school_id=school.id):
        ctx.reply("parent.already", choices=main_menu(ctx), school=school.name)
        return
    ctx.session.add(Redemption(school_id=school.id, account_id=ctx.account.id,
                               person_id=person.id, role=Role.PARENT, at=ctx.clock.now()))
    await ctx.session.refresh(person, ["roles"])
    ctx.reply("parent.done", choices=main_menu(ctx), school=school.name)


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
    channels = await person_channels(ctx)
    ctx.reply("link.done", channels=", ".join(ctx.t(f"channel.{c}") for c in channels))


async def person_channels(ctx: Context) -> list[str]:
    """The messengers this person can be reached on."""
    assert ctx.person is not None
    rows = await ctx.session.execute(select(Account.channel).where(
        Account.person_id == ctx.person.id, Account.blocked_at.is_(None)).distinct())
    return sorted(rows.scalars())


def clean_name(text: str) -> str | None:
    """Return a tidy NFC name, or None if it does not look like a person's name."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not 2 <= len(name) <= NAME_MAX or not any(ch.isalpha() for ch in name):
        return None
    if name.startswith("/"):
        return None
    return name


async def flow(ctx: Context) -> None:
    """Steps of the registration flow (only the name step for now)."""
    step = ctx.conversation.step
    data = ctx.conversation.data or {}
    if step != "name":
        ctx.clear()
        return
    invitation = await ctx.session.get(Invitation, data.get("invitation_id"))
    if invitation is None or not _usable(ctx, invitation):
        ctx.clear()
        return
    name = clean_name(ctx.inbound.text or "")
    if name is None:
        ctx.reply("register.name_invalid", max=NAME_MAX)
        return
    await _complete(ctx, invitation, name=name)


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.flow(FLOW)(flow)
