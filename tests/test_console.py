"""The web console over HTTP: signing in with /web, sessions, CSRF, scope, and each page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from storage.models import (
    AuditEvent,
    CaseAccess,
    ConsoleLink,
    Incident,
    IncidentStatus,
    Person,
)
from tests.auxil.console import (
    ADMIN_CHAT,
    browser,
    csrf_of,
    file_case,
    link_admin,
    person_id,
    sign_in,
    web_link,
)
from tests.auxil.helpers import count
from tests.auxil.people import (
    BACKUP_HX,
    CHIEF_QH,
    LIAISON_HX,
    OFFICER_BT,
    OFFICER_HX,
    PARENT_HX,
    Chat,
    add_province_admin,
    link_everyone,
)


@pytest.fixture
async def people(app, directory, sessions, clock) -> None:
    """The test directory, everyone with a Telegram account."""
    await link_everyone(sessions, clock)


async def test_web_link_signs_in_once_and_opens_the_dashboard(app, people, fake_telegram,
                                                              sessions, clock):
    await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    link = await web_link(fake_telegram, CHIEF_QH)
    async with browser() as client:
        async with client.get(link) as page:  # a link preview fetches this: it must not sign in
            assert page.status == 200
            assert "Đăng nhập với tên: Phạm Thị Bình" in await page.text()
        async with client.get(link.replace("/in/", "/")) as page:
            assert page.status == 401
        async with client.post(link, allow_redirects=False) as signed:
            assert signed.status == 303
            cookie = signed.cookies["safeschool_console"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert cookie["path"] == "/console"
        base = link.split("/console/")[0]
        async with client.get(f"{base}/console/") as page:
            html = await page.text()
        assert page.status == 200
        assert "Tổng quan" in html and "Chưa có cán bộ tiếp nhận (1)" in html
        received = re.search(r'data-figure="console.fig.received"><span class="value">(\d+)',
                             html)
        assert received and received[1] == "1"
        async with client.get(f"{base}/console/chart.png") as chart:
            assert chart.content_type == "image/png"
        async with client.get(f"{base}/console/workbook.xlsx?period=2026") as book:
            assert book.status == 200 and (await book.read())[:2] == b"PK"
        async with sessions() as session:  # the download is in the audit log
            assert "statistics_exported" in (await session.execute(
                select(AuditEvent.action))).scalars().all()
    async with browser() as other, other.post(link, allow_redirects=False) as again:
            assert again.status == 403
            assert "không còn hiệu lực" in await again.text()
    async with sessions() as session:
        stored = (await session.execute(select(ConsoleLink))).scalar_one()
        assert link.rsplit("/", 1)[1] not in stored.token_hash  # only a hash is kept


async def test_a_link_expires_after_ten_minutes(app, people, fake_telegram, clock):
    link = await web_link(fake_telegram, OFFICER_HX)
    clock.advance(timedelta(minutes=10, seconds=1))
    async with browser() as client, client.post(link, allow_redirects=False) as response:
        assert response.status == 403


async def test_liaisons_and_parents_are_told_the_console_is_not_for_them(app, people,
                                                                         fake_telegram):
    for chat_id in (LIAISON_HX, PARENT_HX):
        reply = (await Chat(fake_telegram, chat_id).say("/web"))[0]
        assert "dành cho cán bộ Công an và Ban Chỉ đạo" in reply
        assert "/console/in/" not in reply


async def test_no_page_without_a_session(app, people, fake_telegram):
    base = f"http://127.0.0.1:{app.http_port}/console"
    async with browser() as client:
        for path in ("/", "/cases", "/cases/1", "/directory", "/invitations", "/audit",
                     "/workbook.xlsx"):
            async with client.get(base + path, allow_redirects=False) as response:
                assert response.status == 401, path
        client.cookie_jar.update_cookies({"safeschool_console": "forged"})
        async with client.get(base + "/cases") as response:
            assert response.status == 401


async def test_an_officer_of_another_area_gets_403_on_a_forged_case_url(
        app, people, fake_telegram, sessions, clock):
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX")
    async with browser() as client:
        base = await sign_in(client, fake_telegram, OFFICER_BT)
        async with client.get(f"{base}/cases/{case_id}") as response:
            assert response.status == 403
            assert ref not in await response.text()
        async with client.get(f"{base}/cases") as response:
            assert ref not in await response.text()
        token = await csrf_of(client, f"{base}/")
        async with client.post(f"{base}/cases/{case_id}/ack", data={"csrf": token},
                               allow_redirects=False) as response:
            assert response.status == 403
    async with sessions() as session:
        assert (await session.get(Incident, case_id)).status == IncidentStatus.NEW


async def test_acknowledging_in_the_console_needs_the_csrf_token_and_tells_the_chat(
        app, people, fake_telegram, sessions, clock):
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX")
    reporter = Chat(fake_telegram, LIAISON_HX)
    async with browser() as client:
        base = await sign_in(client, fake_telegram, OFFICER_HX)
        async with client.get(f"{base}/cases/{case_id}") as page:
            html = await page.text()
        assert page.status == 200 and ref in html and "Học sinh bị đánh ở cổng trường" in html
        async with client.post(f"{base}/cases/{case_id}/ack", data={},
                               allow_redirects=False) as refused:
            assert refused.status == 403
        async with sessions() as session:
            assert (await session.get(Incident, case_id)).status == IncidentStatus.NEW
        token = re.search(r'name="csrf" value="([^"]+)"', html)[1]
        mark = reporter.mark()
        async with client.post(f"{base}/cases/{case_id}/ack", data={"csrf": token}) as done:
            assert "Đồng chí đã tiếp nhận vụ việc" in await done.text()
        assert ref in (await reporter.since(mark))[0]
        async with client.post(f"{base}/cases/{case_id}/note",
                               data={"csrf": token, "text": "Đã gặp gia đình"}) as noted:
            assert "Đã gặp gia đình" in await noted.text()
    async with sessions() as session:
        incident = await session.get(Incident, case_id)
        assert incident.status == IncidentStatus.IN_PROGRESS
        actions = set((await session.execute(select(CaseAccess.action).where(
            CaseAccess.incident_id == case_id, CaseAccess.via == "console"))).scalars())
        assert {"viewed", "acknowledged", "note"} <= actions


async def test_sessions_end_when_idle_too_long_and_after_twelve_hours(app, people,
                                                                     fake_telegram, clock):
    async with browser() as client:
        base = await sign_in(client, fake_telegram, OFFICER_HX)
        clock.advance(timedelta(minutes=29))
        async with client.get(f"{base}/cases") as response:
            assert response.status == 200
        clock.advance(timedelta(minutes=31))
        async with client.get(f"{base}/cases") as response:
            assert response.status == 401
    async with browser() as client:
        base = await sign_in(client, fake_telegram, OFFICER_HX)
        for _ in range(12 * 3 - 1):  # busy all day, a request every 20 minutes
            clock.advance(timedelta(minutes=20))
            async with client.get(f"{base}/cases") as response:
                assert response.status == 200
        clock.advance(timedelta(minutes=20, seconds=1))
        async with client.get(f"{base}/cases") as response:
            assert response.status == 401


async def test_sign_out_everywhere_ends_every_session_of_the_person(app, people, fake_telegram,
                                                                   sessions):
    async with browser() as phone, browser() as office:
        base = await sign_in(phone, fake_telegram, OFFICER_HX)
        await sign_in(office, fake_telegram, OFFICER_HX)
        token = await csrf_of(phone, f"{base}/")
        async with phone.post(f"{base}/signout-everywhere", data={"csrf": token}) as out:
            assert out.status == 200
        for client in (phone, office):
            async with client.get(f"{base}/") as response:
                assert response.status == 401
    assert await count(sessions, AuditEvent, AuditEvent.action == "signed_out_everywhere") == 1


async def test_deactivating_an_officer_reroutes_their_open_case(app, people, fake_telegram,
                                                               sessions, clock):
    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX")
    backup = Chat(fake_telegram, BACKUP_HX)
    async with browser() as client, browser() as leaver:
        await sign_in(leaver, fake_telegram, OFFICER_HX)
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        async with client.get(f"{base}/directory/areas/HX") as page:
            html = await page.text()
        assert "Lê Văn An" in html
        token = re.search(r'name="csrf" value="([^"]+)"', html)[1]
        an = await person_id(sessions, OFFICER_HX)
        mark = backup.mark()
        async with client.post(f"{base}/people/{an}/deactivate?area=HX",
                               data={"csrf": token}) as done:
            assert "Đã cho thôi nhiệm vụ" in await done.text()
        async with leaver.get(f"{base}/cases") as response:  # no role left, no console
            assert response.status == 401
    assert ref in (await backup.since(mark))[0]
    backup_id = await person_id(sessions, BACKUP_HX)
    async with sessions() as session:
        incident = await session.get(Incident, case_id)
        assert incident.assigned_person_id == backup_id
        assert incident.status == IncidentStatus.NEW


def _workbook(tmp_path, officers: list[list[str]], areas: list[list[str]] | None = None):
    """A directory workbook made from the console's template names (Vietnamese)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Cán bộ công an"
    sheet.append(["Họ và tên", "Số điện thoại", "Mã địa bàn", "Nhiệm vụ"])
    for row in officers:
        sheet.append(row)
    if areas:
        sheet = book.create_sheet("Địa bàn")
        sheet.append(["Mã địa bàn", "Tên địa bàn", "Mã địa bàn cấp trên"])
        for row in areas:
            sheet.append(row)
    path = tmp_path / "danh-ba.xlsx"
    book.save(path)
    return path


async def test_a_directory_upload_shows_bad_rows_in_vietnamese_then_previews_and_applies(
        app, people, fake_telegram, sessions, clock, tmp_path):
    import aiohttp

    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        token = await csrf_of(client, f"{base}/directory")
        bad = _workbook(tmp_path, [["Lê Văn An", "0912345678", "HX", "chính"],
                                   ["Người Mới", "12ab", "HX", "dự phòng"]])
        form = aiohttp.FormData()
        form.add_field("csrf", token)
        form.add_field("files", bad.read_bytes(), filename="danh-ba.xlsx")
        async with client.post(f"{base}/directory/upload", data=form) as response:
            html = await response.text()
        assert response.status == 422
        assert "Trang tính «Cán bộ công an» (tệp danh-ba.xlsx), dòng 3" in html
        assert "Số điện thoại «12ab» không hợp lệ" in html
        assert "Áp dụng" not in html
        # A new province beside the admin's own is outside what they administer.
        outside = _workbook(tmp_path, [["Lê Văn An", "0912345678", "HX", "chính"]],
                            areas=[["NA", "Tỉnh Nghệ An", ""]])
        form = aiohttp.FormData()
        form.add_field("csrf", token)
        form.add_field("files", outside.read_bytes(), filename="danh-ba.xlsx")
        async with client.post(f"{base}/directory/upload", data=form) as response:
            html = await response.text()
        assert response.status == 422
        assert "Trang tính «Địa bàn» (tệp danh-ba.xlsx), dòng 2" in html
        assert "«NA» nằm ngoài địa bàn do đồng chí quản lý" in html
        # Trần Văn Bảo (backup HX) is not in the file: he would leave; a new officer comes.
        good = _workbook(tmp_path, [["Lê Văn An", "0912345678", "HX", "chính"],
                                    ["Người Mới", "0915000999", "HX", "dự phòng"]])
        form = aiohttp.FormData()
        form.add_field("csrf", token)
        form.add_field("files", good.read_bytes(), filename="danh-ba.xlsx")
        async with client.post(f"{base}/directory/upload", data=form) as response:
            html = await response.text()
        assert response.status == 200, html
        assert "Không còn trong danh sách" in html and "Trần Văn Bảo" in html
        async with sessions() as session:  # a preview changes nothing
            assert (await session.execute(select(Person).where(
                Person.name == "Người Mới"))).scalar_one_or_none() is None
        apply = re.search(r'action="(/console/directory/apply/[^"]+)"', html)[1]
        async with client.post(base.removesuffix("/console") + apply,
                               data={"csrf": token}) as done:
            assert "Đã cập nhật danh bạ" in await done.text()
        async with client.get(f"{base}/audit") as log:  # the province admin reads the log
            assert "directory_imported" in await log.text()
        async with client.get(f"{base}/audit.csv?person=Quản") as csv_file:
            lines = (await csv_file.text()).splitlines()
        assert lines[0].startswith("\ufeffThời điểm") and "directory_imported" in lines[1]
        async with client.get(f"{base}/audit") as log:  # the export is itself in the log
            assert "audit_exported" in await log.text()
    async with browser() as officer:  # an officer reads no log
        base = await sign_in(officer, fake_telegram, OFFICER_HX)
        async with officer.get(f"{base}/audit") as log:
            assert log.status == 403
    async with sessions() as session:
        assert (await session.execute(select(Person).where(
            Person.name == "Người Mới"))).scalar_one().roles[0].duty == "backup"
        bao = (await session.execute(select(Person).where(
            Person.name == "Trần Văn Bảo"))).scalar_one()
        assert bao.roles == []
    assert await count(sessions, AuditEvent, AuditEvent.action == "directory_imported") == 1


async def test_invitation_cards_and_posters_print_as_html_and_pdf(app, people, fake_telegram,
                                                                  sessions, clock):
    from storage.models import Invitation

    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    async with sessions() as session, session.begin():  # a liaison not on any messenger yet
        from bot.services.directory import Row, import_rows
        await import_rows(session, [Row("liaisons", "x", 2, {
            "name": "Cô Mai", "phone": "0903111222", "school_code": "THCS-HX"})], clock.now())
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        token = await csrf_of(client, f"{base}/invitations")
        async with client.post(f"{base}/invitations", data={"csrf": token, "days": "7"}) as sheet:
            html = await sheet.text()
        assert "Cô Mai" in html and 'src="data:image/svg+xml' in html
        code = (await _codes(sessions))[0]
        assert code in html and f"https://t.me/safeschool_test_bot?start={code}" in html
        pdf_url = re.search(r'href="(/console/invitations/sheet.pdf\?ids=[\d,]+)"', html)[1]
        async with client.get(base.removesuffix("/console") + pdf_url) as pdf:
            assert pdf.content_type == "application/pdf" and (await pdf.read())[:5] == b"%PDF-"
        async with client.get(f"{base}/schools/THCS-HX/poster") as poster:
            assert "111" in await poster.text() and "113" in await poster.text()
        async with client.get(f"{base}/schools/THCS-HX/poster.pdf") as pdf:
            assert (await pdf.read())[:5] == b"%PDF-"
    assert await count(sessions, Invitation) >= 1


async def _codes(sessions) -> list[str]:
    from storage.models import Invitation

    async with sessions() as session:
        return list((await session.execute(select(Invitation.code))).scalars())


async def test_a_telegram_photo_is_kept_and_shown_only_to_who_may_see_the_case(
        app, people, fake_telegram, sessions, clock):
    from storage.models import IncidentAttachment

    jpeg = b"\xff\xd8\xff\xe0" + b"photo of the gate" * 10
    fake_telegram.files["AgACgate"] = (jpeg, "image/jpeg")
    case_id, _ = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX")
    async with sessions() as session, session.begin():
        session.add(IncidentAttachment(incident_id=case_id, channel="telegram", kind="photo",
                                       ref="AgACgate", mime_type="image/jpeg", size=len(jpeg),
                                       source="reporter", created_at=clock.now()))
    async with browser() as client:
        base = await sign_in(client, fake_telegram, OFFICER_HX)
        async with client.get(f"{base}/cases/{case_id}") as page:
            assert "đang tải bản sao về máy chủ" in await page.text()
        assert await app.media_tick() == 1  # getFile, then the download
        async with client.get(f"{base}/cases/{case_id}") as page:
            html = await page.text()
        url = re.search(r'<img class="thumb" src="(/console/cases/\d+/files/\d+)"', html)[1]
        async with client.get(base.removesuffix("/console") + url) as photo:
            assert photo.status == 200 and await photo.read() == jpeg
            assert photo.content_type == "image/jpeg"
            assert "sandbox" in photo.headers["Content-Security-Policy"]
    async with browser() as other:  # an officer of another district: not theirs
        base = await sign_in(other, fake_telegram, OFFICER_BT)
        async with other.get(base.removesuffix("/console") + url) as photo:
            assert photo.status == 403
    async with sessions() as session:
        opened = (await session.execute(select(CaseAccess.action).where(
            CaseAccess.incident_id == case_id, CaseAccess.action == "opened_file"))).all()
    assert len(opened) == 1


def test_directory_uploads_nobody_applied_are_deleted_after_a_day(tmp_path):
    import os
    import time

    from storage.media import UPLOADS, forget_old_uploads

    old, fresh = tmp_path / UPLOADS / "old-token", tmp_path / UPLOADS / "fresh-token"
    for folder in (old, fresh):
        (folder / "0").mkdir(parents=True)
        (folder / "0" / "danh-ba.xlsx").write_bytes(b"PK")
    day_ago = time.time() - 24 * 3600 - 60
    os.utime(old, (day_ago, day_ago))
    assert forget_old_uploads(tmp_path) == 1
    assert not old.exists() and fresh.exists()


async def test_the_template_workbook_reads_back_as_it_is_downloaded(
        app, people, fake_telegram, sessions, clock, tmp_path):
    from bot.services.directory import read_files

    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        async with client.get(f"{base}/directory/template.xlsx") as book:
            assert book.status == 200
            path = tmp_path / "mau.xlsx"
            path.write_bytes(await book.read())
    from openpyxl import load_workbook

    sheets = load_workbook(path).sheetnames
    assert sheets == ["Địa bàn", "Trường học", "Cán bộ công an", "Giáo viên đầu mối"]
    rows, problems = read_files([path])
    assert problems == []
    assert sorted({r.kind for r in rows}) == ["areas", "liaisons", "officers", "schools"]
    officer = next(r for r in rows if r.kind == "officers")
    assert officer.values["duty"] == "trực chính"
