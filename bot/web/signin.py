"""Signing in with a /web link, signing out (here, or everywhere)."""

from __future__ import annotations

from aiohttp import web

from bot.core.i18n import Translator
from bot.services import console
from bot.web.base import COOKIE, DEPS, page_of, render, see_other, set_cookie

routes = web.RouteTableDef()


@routes.get("/in/{token}")
async def signin_page(request: web.Request) -> web.Response:
    """Show who the link signs in, with a button: the link is used by the button's POST, so a
    messenger's link preview (which fetches the page) cannot use it up, and the cookie is set
    by a same-site request (a SameSite=Strict cookie set across sites would not be sent)."""
    deps = request.app[DEPS]
    async with deps.sessions() as db, db.begin():
        person = await console.link_person(db, request.match_info["token"], deps.clock.now())
    if person is None:
        return render(request, "message.html", status=403, message_key="console.link_invalid")
    t = Translator(person.language or deps.settings.default_language)
    return render(request, "signin.html", t=t, name=person.name or "—")


@routes.post("/in/{token}")
async def signin(request: web.Request) -> web.Response:
    """Use the link and start the session."""
    deps = request.app[DEPS]
    async with deps.sessions() as db, db.begin():
        started = await console.redeem(db, request.match_info["token"], deps.clock.now())
    if started is None:
        return render(request, "message.html", status=403, message_key="console.link_invalid")
    response = see_other("/console/")
    set_cookie(response, deps.settings, started.token)
    return response


@routes.post("/signout")
async def signout(request: web.Request) -> web.Response:
    """End this browser's session."""
    page = page_of(request)
    await console.sign_out(page.db, page.row, page.now)
    response = render(request, "message.html", message_key="console.signed_out_done",
                      t=page.t)
    response.del_cookie(COOKIE, path="/console")
    return response


@routes.post("/signout-everywhere")
async def signout_everywhere(request: web.Request) -> web.Response:
    """End every session of this person (a lost phone, a shared computer)."""
    page = page_of(request)
    await console.sign_out(page.db, page.row, page.now, everywhere=True)
    response = render(request, "message.html", message_key="console.signed_out_everywhere",
                      t=page.t)
    response.del_cookie(COOKIE, path="/console")
    return response
