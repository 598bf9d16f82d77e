"""Danh bạ: the area tree with counts, the people of an area, importing a workbook or CSV
files with a preview (new, updated, moved, removed; every bad row in the reader's language),
deactivating someone who left, and the template workbook."""

from __future__ import annotations

import io
import re
import secrets
import shutil
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from bot.services import console, directory
from bot.services.cases import Refused, officer_scope
from bot.web.base import HEADERS, Page, page_of, see_other
from storage.media import UPLOADS
from storage.models import Area, Person, Role, RoleAssignment, School

routes = web.RouteTableDef()
UPLOAD = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
ALLOWED = (".xlsx", ".csv")
DONE = ("imported", "cancelled", "deactivated")


def _done(request: web.Request) -> str | None:
    done = request.query.get("done")
    return done if done in DONE else None


async def admin_scope(page: Page) -> set[int]:
    """The areas an admin runs (theirs and below); anyone else is refused."""
    if not page.is_admin:
        raise Refused("directory")
    return set(await officer_scope(page.db, page.person, (Role.ADMIN,)))


def _uploads(page: Page) -> Path:
    return Path(page.deps.settings.media_dir) / UPLOADS


@routes.get("/directory")
async def tree(request: web.Request) -> web.Response:
    """The area tree (the admin's part of it) with counts, and the upload form."""
    page = page_of(request)
    allowed = await admin_scope(page)
    roots: list[directory.AreaNode] = []

    def keep(node: directory.AreaNode) -> None:
        if node.area.id in allowed:
            roots.append(node)
        else:
            for child in node.children:
                keep(child)

    for node in await directory.directory_tree(page.db):
        keep(node)
    return page.render("directory.html", nav="directory", roots=roots,
                       done=_done(request))


@routes.get("/directory/areas/{code}")
async def area_people(request: web.Request) -> web.Response:
    """The officers of an area and the liaisons of its schools, to deactivate one."""
    page = page_of(request)
    allowed = await admin_scope(page)
    area = (await page.db.execute(select(Area).where(
        Area.code == request.match_info["code"]))).scalar_one_or_none()
    if area is None or area.id not in allowed:
        raise Refused("area")
    schools = (await page.db.execute(select(School).where(School.area_id == area.id)
                                     .order_by(School.name))).scalars().all()
    roles = (await page.db.execute(select(RoleAssignment).where(
        RoleAssignment.role.in_([Role.OFFICER, Role.ADMIN, Role.LIAISON]),
        (RoleAssignment.area_id == area.id)
        | RoleAssignment.school_id.in_([s.id for s in schools]))
        .order_by(RoleAssignment.role, RoleAssignment.person_id))).scalars().all()
    people = {r.person_id: await page.db.get(Person, r.person_id) for r in roles}
    return page.render("area.html", nav="directory", area=area, schools=schools, roles=roles,
                       people=people, done=_done(request))


@routes.post("/directory/upload")
async def upload(request: web.Request) -> web.Response:
    """Keep the uploaded files aside and show what applying them would change."""
    page = page_of(request)
    await admin_scope(page)
    form = await request.post()
    files = [f for f in form.getall("files", []) if isinstance(f, web.FileField)]
    if not files or not all(Path(f.filename).suffix.lower() in ALLOWED for f in files):
        return page.render("directory_preview.html", nav="directory", token=None,
                           problems=[], preview=None, message="console.directory.choose_file")
    token = secrets.token_urlsafe(24)
    folder = _uploads(page) / token
    folder.mkdir(parents=True)
    for n, item in enumerate(files):  # each in a folder of its own: people know it by its name
        name = re.sub(r"[^\w.\-]+", "_", Path(item.filename).name)[-80:] or f"file{n}"
        (folder / str(n)).mkdir()
        (folder / str(n) / name).write_bytes(item.file.read())
    return await _preview(page, token)


async def _read(page: Page, token: str) -> tuple[list[directory.Row],
                                                  list[directory.ImportProblem]]:
    if not UPLOAD.match(token) or not (_uploads(page) / token).is_dir():
        raise web.HTTPNotFound(text=page.t("console.directory.upload_gone"))
    paths = sorted((_uploads(page) / token).glob("*/*"))
    rows, problems = directory.read_files(paths)
    if not problems:
        problems = await directory.scope_problems(page.db, rows, await admin_scope(page))
    return rows, problems


async def _preview(page: Page, token: str) -> web.Response:
    rows, problems = await _read(page, token)
    found = None
    if not problems:
        try:
            found = await directory.preview(page.db, rows, page.now)
        except directory.DirectoryError as exc:
            problems = exc.problems
    status = 422 if problems else 200
    return page.render("directory_preview.html", nav="directory", token=token,
                       problems=problems, preview=found, message=None, status=status)


@routes.post("/directory/apply/{token}")
async def apply(request: web.Request) -> web.Response:
    """Apply the previewed files: the import, the roles of those who moved or left ended,
    their open cases routed afresh; all in one transaction, audited."""
    page = page_of(request)
    token = request.match_info["token"]
    rows, problems = await _read(page, token)
    if problems:
        return await _preview(page, token)
    try:
        found = await directory.preview(page.db, rows, page.now)
        result = await directory.import_rows(page.db, rows, page.now)
    except directory.DirectoryError:
        return await _preview(page, token)
    leaving = [*found.moved, *found.removed]
    ended = await directory.end_roles(page.db, leaving)
    for person_id in sorted({who.person_id for who in leaving}):
        await page.cases.release(page.actor, person_id)
    await console.audit(page.db, page.person.id, "directory_imported", None, page.now,
                        created=dict(result.created), updated=dict(result.updated),
                        ended=[[r.person_id, r.role, r.area_id, r.school_id] for r in ended])
    page.changed()
    shutil.rmtree(_uploads(page) / token, ignore_errors=True)
    return see_other("/console/directory", done="imported")


@routes.post("/directory/cancel/{token}")
async def cancel(request: web.Request) -> web.Response:
    """Forget the uploaded files."""
    page = page_of(request)
    await admin_scope(page)
    token = request.match_info["token"]
    if UPLOAD.match(token):
        shutil.rmtree(_uploads(page) / token, ignore_errors=True)
    return see_other("/console/directory", done="cancelled")


@routes.post("/people/{id}/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    """Someone left: their roles in the admin's areas end, their open cases there are routed
    afresh; the person, their accounts and every case stay."""
    page = page_of(request)
    allowed = await admin_scope(page)
    try:
        person = await page.db.get(Person, int(request.match_info["id"]))
    except ValueError:
        person = None
    if person is None or person.id == page.person.id:
        raise Refused("deactivate")
    details, released = await directory.deactivate(page.db, person, page.cases, page.actor,
                                                    allowed)
    if not details:
        raise Refused("deactivate")
    await console.audit(page.db, page.person.id, "person_deactivated", f"person:{person.id}",
                        page.now, roles=details, cases=[i.ref for i in released])
    page.changed()
    back = request.query.get("area", "")
    target = f"/console/directory/areas/{back}" if re.match(r"^[\w.\-]+$", back) else \
        "/console/directory"
    return see_other(target, done="deactivated")


@routes.get("/directory/template.xlsx")
async def template(request: web.Request) -> web.Response:
    """The workbook to fill in: Vietnamese sheet and column names, a filled example row."""
    page = page_of(request)
    await admin_scope(page)
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    examples = {
        "areas": {"code": "HX", "name": "Phường Hạc Xá", "parent_code": "TH", "level": "phường"},
        "schools": {"code": "THCS-HX", "name": "Trường THCS Hạc Xá", "area_code": "HX",
                    "level": "THCS", "address": "12 Đường Trần Phú"},
        "officers": {"name": "Lê Văn An", "phone": "0912345678", "area_code": "HX",
                     "duty": "trực chính"},
        "liaisons": {"name": "Nguyễn Thị Hoa", "phone": "0901234567",
                     "school_code": "THCS-HX"},
    }
    sheet_names = {kind: title for title, kind in directory.VI_SHEETS.items()}
    for kind in directory.KINDS:
        sheet = book.create_sheet(sheet_names[kind].capitalize())
        columns = {english: vi for vi, english in directory.VI_COLUMNS[kind].items()}
        names = [columns[c] for c in directory.COLUMNS[kind]]
        sheet.append([n[0].upper() + n[1:] for n in names])
        sheet.append([examples[kind].get(c, "") for c in directory.COLUMNS[kind]])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for n, name in enumerate(names):
            sheet.column_dimensions[chr(65 + n)].width = max(16, len(name) + 6)
    buffer = io.BytesIO()
    book.save(buffer)
    return web.Response(body=buffer.getvalue(), headers={
        **HEADERS, "Content-Disposition": 'attachment; filename="mau-danh-ba.xlsx"',
        "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
