"""The web console: server-rendered pages (aiohttp-jinja2), a pinned htmx, plain CSS.

Mounted by the app under /console. Pages live in their own modules; `base` holds what they
share (the signed-in person, the transaction, CSRF)."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.web import (
    audit,
    campaigns,
    cases,
    dashboard,
    directory,
    escalation,
    invitations,
    signin,
)
from bot.web.base import DEPS, Deps, console_middleware

HERE = Path(__file__).parent


def console_app(deps: Deps) -> web.Application:
    """Build the console's sub-application."""
    app = web.Application(middlewares=[console_middleware], client_max_size=10 * 1024**2)
    app[DEPS] = deps
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=jinja2.select_autoescape(default=True),
                         undefined=jinja2.StrictUndefined, trim_blocks=True,
                         lstrip_blocks=True)
    app[aiohttp_jinja2.static_root_key] = "/console/static"
    app.router.add_static("/static", HERE / "static")
    for module in (signin, dashboard, cases, campaigns, escalation, directory, invitations,
                   audit):
        app.add_routes(module.routes)
    return app
