"""What every console page shares: the signed-in person, the transaction, CSRF, rendering.

One request is one database transaction: the middleware opens it, finds the session by its
cookie (idle and absolute timeouts), checks the CSRF token of every POST, runs the page and
commits (the delivery worker is woken when a change queued messages). Pages reach cases only
through the case service, as `Actor(person, "console")`, so every rule and every audit row is
the chat's own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.clock import Clock
from bot.core.i18n import Translator
from bot.core.settings import Settings
from bot.services import console, report_files
from bot.services.cases import Actor, CaseService, Refused
from storage.models import ConsoleSession, Duty, Person, Role

_LOGGER = logging.getLogger(__name__)
COOKIE = "safeschool_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC = ("/console/in/", "/console/static/")  # everything else needs a session
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a sign-in link's token never leaves in a Referer
    "Cache-Control": "private, no-store",
}


@dataclass
class Deps:
    """What the console needs from the app."""

    sessions: async_sessionmaker[AsyncSession]
    readers: async_sessionmaker[AsyncSession]
    settings: Settings
    clock: Clock
    wake: Callable[[], None]
    paused: Callable[[datetime], list[str]]


DEPS = web.AppKey("deps", Deps)


@dataclass
class Page:
    """One request's view of the world: who, when, in what language, in which transaction."""

    request: web.Request
    db: AsyncSession
    person: Person
    row: ConsoleSession
    now: datetime
    deps: Deps

    @property
    def t(self) -> Translator:
        """Text in the person's language."""
        return Translator(self.person.language or self.deps.settings.default_language)

    @property
    def actor(self) -> Actor:
        """The person as the services see them, through the console."""
        return Actor(self.person, "console")

    @property
    def cases(self) -> CaseService:
        """The case service, in this request's transaction and at its time."""
        settings = self.deps.settings
        return CaseService(self.db, now=self.now, tz=settings.tz,
                           default_language=settings.default_language)

    @property
    def is_admin(self) -> bool:
        """A committee admin (of any area)."""
        return any(r.role == Role.ADMIN for r in self.person.roles)

    @property
    def is_chief(self) -> bool:
        """An officer with a chief's duty somewhere."""
        return any(r.role == Role.OFFICER and r.duty == Duty.CHIEF for r in self.person.roles)

    def local(self, when: datetime | None) -> str:
        """A time as people read it: 14:05 22/11/2026."""
        if when is None:
            return "—"
        return when.astimezone(self.deps.settings.tz).strftime("%H:%M %d/%m/%Y")

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """Render a page with what every template uses."""
        t = self.t
        return render(self.request, template, status=status, page=self, t=t,
                      csrf=self.row.csrf, pct=lambda value: report_files.percent(t, value),
                      **context)

    def changed(self) -> None:
        """This request queued messages: wake the worker after the commit."""
        self.request[CHANGED] = True


PAGE = web.RequestKey("page", Page)
CHANGED = web.RequestKey("changed", bool)


def render(request: web.Request, template: str, *, status: int = 200,
           **context: Any) -> web.Response:
    """Render a template with the console's headers."""
    context.setdefault("t", Translator(request.app[DEPS].settings.default_language))
    context.setdefault("page", None)
    context.setdefault("csrf", None)
    context.setdefault("nav", "")
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(HEADERS)
    return response


def see_other(location: str, **query: object) -> web.Response:
    """Redirect after a POST (303: the browser follows with a GET)."""
    values = {k: v for k, v in query.items() if v is not None}
    if values:
        location = f"{location}?{urlencode(values)}"
    return web.Response(status=303, headers={"Location": location, **HEADERS})


def page_of(request: web.Request) -> Page:
    """The Page the middleware made for this request."""
    return request[PAGE]


def secure_cookie(settings: Settings) -> bool:
    """Send the cookie over HTTPS only when the console is reached over HTTPS."""
    return settings.console_base.startswith("https://")


def set_cookie(response: web.StreamResponse, settings: Settings, value: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure on HTTPS, for /console only."""
    response.set_cookie(COOKIE, value, path="/console", httponly=True, samesite="Strict",
                        secure=secure_cookie(settings),
                        max_age=int(settings.console_max_hours * 3600))


def _refused_page(request: web.Request, status: int, key: str) -> web.Response:
    return render(request, "message.html", status=status, message_key=key)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session, CSRF and transaction around every console page (see the module's doc)."""
    deps = request.app[DEPS]
    if request.path.startswith(PUBLIC):
        return await handler(request)
    now = deps.clock.now()
    settings = deps.settings
    async with deps.sessions() as db:
        async with db.begin():
            row = await console.current(db, request.cookies.get(COOKIE), now,
                                        idle_minutes=settings.console_idle_minutes,
                                        max_hours=settings.console_max_hours)
        if row is None:
            response = _refused_page(request, 401, "console.signed_out")
            response.del_cookie(COOKIE, path="/console")
            return response
        if request.method not in ("GET", "HEAD"):
            given = request.headers.get(CSRF_HEADER)
            if given is None and request.content_type in (
                    "application/x-www-form-urlencoded", "multipart/form-data"):
                given = (await request.post()).get(CSRF_FIELD)  # type: ignore[assignment]
            if not console.csrf_ok(row, given if isinstance(given, str) else None):
                _LOGGER.warning("Console: a %s without a valid CSRF token (person %s)",
                                request.method, row.person_id)
                return _refused_page(request, 403, "console.csrf")
        async with db.begin():
            request[PAGE] = Page(request, db, row.person, row, now, deps)
            try:
                response = await handler(request)
            except Refused:
                # Refused changes nothing, but the case service may have queued an audit
                # row: keep the record of who tried.
                response = _refused_page(request, 403, "console.forbidden")
    if request.get(CHANGED):
        deps.wake()
    response.headers.update({k: v for k, v in HEADERS.items() if k not in response.headers})
    return response


def query_string(request: web.Request, **changes: object) -> str:
    """This page's query with some values changed (for pagination links)."""
    values = dict(request.query)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = str(value)
    return urlencode(values)
