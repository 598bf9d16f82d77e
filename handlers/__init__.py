"""Channel-agnostic conversation handlers, composed into one router here."""

from bot.dispatch import Router


def build_router() -> Router:
    """Compose every feature module's handlers into one router."""
    from handlers import (
        campaigns,
        cases,
        common,
        consent,
        duty,
        linking,
        registration,
        report,
    )

    router = Router()
    for module in (common, registration, report, cases, linking, duty, consent, campaigns):
        module.register(router)
    return router
