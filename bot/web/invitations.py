"""Mã mời: personal invitation codes for the directory's people, a printable A4 sheet of
cards with QR codes (HTML to print, and PDF), and a parents' poster per school."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from sqlalchemy import select

from bot.core.i18n import Translator
from bot.services import console
from bot.services.codes import deep_link, telegram_username
from bot.services.directory import public_page_url, set_public_page
from bot.services.invitations import personal_invitations
from bot.web.base import HEADERS, Page, page_of, see_other
from bot.web.cards import Card, qr_png, qr_uri
from bot.web.directory import admin_scope
from storage.models import Area, Invitation, Role, School

routes = web.RouteTableDef()


def _role(t: Translator, role: str, duty: str | None) -> str:
    if role == Role.OFFICER and duty:
        return t("role.officer_with_duty", duty=t(f"duty.{duty}"))
    return t(f"role.{role}")


async def _cards(page: Page, ids: list[int]) -> list[Card]:
    allowed = await admin_scope(page)
    rows = (await page.db.execute(select(Invitation).where(Invitation.id.in_(ids))
                                  .order_by(Invitation.id))).scalars().all()
    username = await telegram_username(page.db, page.deps.settings.telegram_bot_username)
    cards = []
    t = page.t
    for row in rows:
        area_id = row.school.area_id if row.school else row.area_id
        if area_id not in allowed:
            continue
        scope = row.school or row.area
        cards.append(Card(row.person.name if row.person and row.person.name else "—",
                          _role(t, row.role, row.duty), scope.name if scope else "—",
                          row.code, deep_link(username, row.code), page.local(row.expires_at)))
    return cards


def _ids(request: web.Request) -> list[int]:
    try:
        return [int(x) for x in request.query.get("ids", "").split(",") if x.strip()]
    except ValueError:
        return []


@routes.get("/invitations")
async def invitations(request: web.Request) -> web.Response:
    """The form, and the schools of the admin's areas (for their posters)."""
    page = page_of(request)
    allowed = await admin_scope(page)
    schools = (await page.db.execute(select(School).where(School.area_id.in_(allowed))
                                     .order_by(School.name).limit(500))).scalars().all()
    return page.render("invitations.html", nav="invitations", schools=schools,
                       days=page.deps.settings.invite_default_expiry_days,
                       nobody=request.query.get("done") == "nobody")


@routes.post("/invitations")
async def create(request: web.Request) -> web.Response:
    """Personal codes for everyone in the admin's areas who has no messenger account yet;
    then the sheet to print."""
    page = page_of(request)
    allowed = await admin_scope(page)
    form = await request.post()
    try:
        days = min(90, max(1, int(str(form.get("days", "")))))
    except ValueError:
        days = page.deps.settings.invite_default_expiry_days
    found = await personal_invitations(page.db, page.now, timedelta(days=days), allowed)
    await console.audit(page.db, page.person.id, "invitations_printed", None, page.now,
                        codes=len(found))
    if not found:
        return see_other("/console/invitations", done="nobody")
    return see_other("/console/invitations/sheet",
                     ids=",".join(str(invitation.id) for _, _, invitation in found))


@routes.get("/invitations/sheet")
async def sheet(request: web.Request) -> web.Response:
    """The printable sheet (A4, one card per person)."""
    page = page_of(request)
    cards = await _cards(page, _ids(request))
    return page.render("sheet.html", nav="invitations", cards=cards,
                       ids=request.query.get("ids", ""))


@routes.get("/invitations/sheet.pdf")
async def sheet_pdf(request: web.Request) -> web.Response:
    """The same sheet as a PDF."""
    page = page_of(request)
    cards = await _cards(page, _ids(request))
    from bot.web import pdf

    body = pdf.cards(page.t, cards, qr_png)
    return _pdf(body, "ma-moi.pdf")


async def _school(page: Page, code: str) -> tuple[School, str | None]:
    allowed = await admin_scope(page)
    school = (await page.db.execute(select(School).where(School.code == code)))\
        .scalar_one_or_none()
    if school is None or school.area_id not in allowed:
        raise web.HTTPNotFound()
    username = await telegram_username(page.db, page.deps.settings.telegram_bot_username)
    return school, deep_link(username, school.parent_code)


@routes.get("/schools/{code}/poster")
async def poster(request: web.Request) -> web.Response:
    """A poster for a school's parents: the QR of the Telegram join link, the code for Zalo,
    and the hotlines."""
    page = page_of(request)
    school, link = await _school(page, request.match_info["code"])
    area = await page.db.get(Area, school.area_id)
    return page.render("poster.html", nav="invitations", school=school, area=area, link=link,
                       qr=qr_uri(link or school.parent_code))


@routes.get("/schools/{code}/poster.pdf")
async def poster_pdf(request: web.Request) -> web.Response:
    """The poster as a PDF."""
    page = page_of(request)
    school, link = await _school(page, request.match_info["code"])
    from bot.web import pdf

    body = pdf.poster(page.t, school.name, school.parent_code, qr_png(link or school.parent_code))
    return _pdf(body, f"poster-{school.code}.pdf")


@routes.post("/schools/{code}/public")
async def public_page(request: web.Request) -> web.Response:
    """Open or close a school's public report page (the admin's own areas only)."""
    page = page_of(request)
    school, _link = await _school(page, request.match_info["code"])
    on = (await request.post()).get("on") == "1"
    await set_public_page(page.db, school.code, on)
    await console.audit(page.db, page.person.id, "public_page_on" if on else "public_page_off",
                        f"school:{school.code}", page.now)
    return see_other("/console/invitations")


async def _public_school(page: Page, code: str) -> tuple[School, str]:
    school, _link = await _school(page, code)
    if not school.public_reports:
        raise web.HTTPNotFound(text="the public report page of this school is closed")
    return school, public_page_url(page.deps.settings.console_base, school.code)


@routes.get("/schools/{code}/report-poster")
async def report_poster(request: web.Request) -> web.Response:
    """A poster for anyone at the school: the QR of its public report page."""
    page = page_of(request)
    school, url = await _public_school(page, request.match_info["code"])
    return page.render("report_poster.html", nav="invitations", school=school, url=url,
                       qr=qr_uri(url))


@routes.get("/schools/{code}/report-poster.pdf")
async def report_poster_pdf(request: web.Request) -> web.Response:
    """The report poster as a PDF."""
    page = page_of(request)
    school, url = await _public_school(page, request.match_info["code"])
    from bot.web import pdf

    body = pdf.report_poster(page.t, school.name, url, qr_png(url))
    return _pdf(body, f"bao-tin-{school.code}.pdf")


def _pdf(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, headers={
        **HEADERS, "Content-Type": "application/pdf",
        "Content-Disposition": f'inline; filename="{name}"'})
