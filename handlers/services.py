"""How a chat handler reaches the domain services: as this person, through this messenger."""

from __future__ import annotations

from bot.core.context import Context
from bot.services.cases import Actor, CaseService


def actor(ctx: Context) -> Actor:
    """The person behind this message, as the services see them."""
    return Actor(ctx.person, ctx.inbound.channel, ctx.account.id)


def case_service(ctx: Context) -> CaseService:
    """The case service, in this message's transaction and at this message's time."""
    return CaseService(ctx.session, now=ctx.clock.now(), tz=ctx.settings.tz,
                       default_language=ctx.settings.default_language)
