"""A school's public report page (web chat): anyone reports for that school, anonymously,
and comes back with the reference and the secret follow-up code."""

from __future__ import annotations

from sqlalchemy import select

from bot.core.context import Context, Router
from bot.services.cases import CaseChoice
from handlers import report
from handlers.registration import (
    code_locked,
    count_failure,
    ensure_person,
    ensure_role,
    reset_failures,
)
from handlers.services import actor, case_service
from storage.models import Role, School


async def public(ctx: Context) -> None:
    """/public SCHOOL: the page's "report" button. Only a public page's browser may use it,
    and only for a school whose public page an admin turned on."""
    if not ctx.public_visitor or len(ctx.inbound.args) != 1:
        ctx.reply("public.not_here")
        return
    school = (await ctx.session.execute(select(School).where(
        School.code == ctx.inbound.args[0], School.public_reports.is_(True)))).scalar_one_or_none()
    if school is None:
        ctx.reply("public.closed")
        return
    person = await ensure_person(ctx, None)
    if await ensure_role(ctx, person, Role.PUBLIC, school_id=school.id):
        await ctx.session.refresh(person, ["roles"])
    await report.start(ctx, school_id=school.id)


async def followup(ctx: Context) -> None:
    """/followup REF CODE: the status of a public report, and the officer's question waiting
    for an answer; from then on this browser is that report's (anonymous) reporter."""
    if not ctx.public_visitor:
        ctx.reply("public.not_here")
        return
    if len(ctx.inbound.args) != 2:
        ctx.reply("followup.usage")
        return
    if code_locked(ctx):
        return
    found = await case_service(ctx).follow_up(actor(ctx), *ctx.inbound.args)
    if found is None:
        count_failure(ctx)
        return
    reset_failures(ctx)
    await ctx.session.refresh(ctx.account, ["person"])
    incident, question = found
    t = ctx.t
    status = t(f"reporter_status.{incident.status}")
    if incident.outcome:
        status += f" — {t(f'outcome_reporter.{incident.outcome}')}"
    ctx.reply("followup.status", ref=incident.ref, status=status)
    if question is not None:
        ctx.reply("reporter.question", ref=incident.ref, question=question,
                  choices=[CaseChoice("reply", incident.id).choice(t("reporter.reply"))])


def register(router: Router) -> None:
    """Wire this module's handlers."""
    router.command("public")(public)
    router.command("followup")(followup)
