"""Chat flows, channel-agnostic: each module registers its commands, choices and flows."""

from bot.core.context import Router
from handlers import (
    campaigns,
    cases,
    common,
    consent,
    duty,
    linking,
    public,
    registration,
    report,
    stats,
    web,
)


def build_router() -> Router:
    """Compose every feature module's handlers into one router."""
    router = Router()
    for module in (common, registration, report, cases, linking, duty, consent, campaigns,
                   stats, web, public):
        module.register(router)
    return router
