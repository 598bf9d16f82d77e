"""The console in a real browser (Playwright driving Debian's Chromium): sign in through a
/web link received at the fake Telegram, read the dashboard, acknowledge a case and see the
officer's chat told, upload a directory workbook with a bad row, print invitation cards whose
QR code decodes to the right link, and be refused a forged case URL and a POST without CSRF.
Screenshots land in build/ (CI keeps them)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from bot.core.i18n import Translator
from bot.services.directory import Row, import_rows
from tests.auxil.console import file_case, web_link
from tests.auxil.people import (
    LIAISON_HX,
    OFFICER_BT,
    OFFICER_HX,
    Chat,
    add_province_admin,
    link_everyone,
)
from tests.test_console import ADMIN_CHAT, _workbook, link_admin

CHROMIUM = os.environ.get("SAFESCHOOL_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).parents[1] / "build" / "screenshots"
PHONE = {"width": 390, "height": 844}
VI = Translator("vi")


@pytest.fixture
async def chromium():
    """Debian's Chromium, headless (Playwright cannot download browsers here). Missing, the
    test fails and says how to install it: a skipped browser test would hide a broken console."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium "
                    "(or set SAFESCHOOL_CHROMIUM)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                   args=["--no-sandbox"])
        yield browser
        await browser.close()


async def _sign_in(browser, fake, chat_id, **context):
    link = await web_link(fake, chat_id)
    ctx = await browser.new_context(locale="vi-VN", **context)
    page = await ctx.new_page()
    await page.goto(link)
    await page.get_by_role("button", name="Đăng nhập").click()
    await page.wait_for_url(re.compile(r"/console/$"))
    return ctx, page


async def test_the_console_in_a_browser(app, directory, sessions, clock, fake_telegram,
                                        chromium, tmp_path):
    await link_everyone(sessions, clock)
    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    async with sessions() as session, session.begin():  # a teacher not on any messenger yet
        await import_rows(session, [Row("liaisons", "x", 2, {
            "name": "Cô Mai", "phone": "0903111222", "school_code": "THCS-HX"})], clock.now())
    SHOTS.mkdir(parents=True, exist_ok=True)

    # The committee admin, on a phone: the dashboard and the case.
    ctx, page = await _sign_in(chromium, fake_telegram, ADMIN_CHAT, viewport=PHONE)
    received = page.locator('[data-figure="console.fig.received"] .value')
    assert await received.inner_text() == "1"
    await page.screenshot(path=SHOTS / "dashboard-390.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the dashboard scrolls sideways on a phone ({width} px)"

    await page.get_by_role("link", name="Vụ việc", exact=True).click()
    await page.get_by_role("link", name=ref).click()
    assert await page.locator('[data-field="status"]').inner_text() == VI("status.new")
    await page.screenshot(path=SHOTS / "case-390.png", full_page=True)
    officer = Chat(fake_telegram, OFFICER_HX)
    mark = officer.mark()
    await page.get_by_role("button", name="Tiếp nhận").click()
    await page.get_by_text("Đồng chí đã tiếp nhận vụ việc").wait_for()
    assert await page.locator('[data-field="status"]').inner_text() == \
        VI("status.acknowledged")
    told = (await officer.since(mark))[0]
    assert ref in told and "Vũ Thị Quản" in told

    # A POST without the CSRF token, from the signed-in browser, is refused.
    refused = await page.request.post(f"{page.url.split('?')[0]}/note",
                                      form={"text": "không có mã bảo vệ"})
    assert refused.status == 403

    # The directory: a workbook with one bad row.
    bad = _workbook(tmp_path, [["Lê Văn An", "0912345678", "HX", "chính"],
                               ["Người Mới", "12ab", "HX", "dự phòng"]])
    await page.set_viewport_size({"width": 1200, "height": 900})
    await page.get_by_role("link", name="Danh bạ").click()
    await page.locator('input[type="file"]').set_input_files(bad)
    await page.get_by_role("button", name="Kiểm tra tệp").click()
    row = page.locator("table.problems tbody tr").first
    await row.wait_for()
    assert "dòng 3" in await row.inner_text() and "12ab" in await row.inner_text()
    await page.screenshot(path=SHOTS / "directory-bad-row.png", full_page=True)

    # Invitation cards, as printed: the QR code opens the bot with the person's code.
    await page.get_by_role("link", name="Mã mời").click()
    await page.get_by_role("button", name="Tạo mã và in phiếu").click()
    await page.wait_for_url(re.compile(r"/invitations/sheet"))
    await page.emulate_media(media="print")
    card = page.locator(".invite-card").first
    code = await card.locator(".code").inner_text()
    await page.screenshot(path=SHOTS / "invitation-sheet-print.png", full_page=True)
    picture = await card.locator("img.qr").screenshot()
    import zxingcpp
    from PIL import Image

    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(picture)))
    assert [d.text for d in decoded] == [f"https://t.me/safeschool_test_bot?start={code}"]
    await page.emulate_media(media="screen")

    # A campaign: the reach counts itself as the audience changes (htmx), then a draft.
    await page.set_viewport_size(PHONE)
    await page.get_by_role("link", name="Tuyên truyền").click()
    await page.get_by_role("link", name="Tạo chiến dịch").click()
    reach = page.locator("#reach")
    await page.get_by_text("Hiện sẽ gửi tới 1 người trong số 1 người").wait_for()
    await page.get_by_label(VI("role.liaison")).check()  # Cô Mai has no messenger yet
    await page.get_by_text("Hiện sẽ gửi tới 3 người trong số 4 người").wait_for()
    assert "3 người" in await reach.inner_text()
    await page.get_by_label("Tên chiến dịch").fill("Tháng hành động vì trẻ em")
    await page.locator('input[name="content"]').first.check()
    await page.get_by_role("button", name="Lưu nháp và xem trước").click()
    await page.get_by_text("Đã lưu bản nháp").wait_for()
    await page.screenshot(path=SHOTS / "campaign-draft-390.png", full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the campaign page scrolls sideways ({width} px)"

    # Escalation: the policy in force for the commune, where it comes from.
    await page.get_by_role("link", name="Leo thang").click()
    await page.get_by_role("link", name="Xã Hồi Xuân").click()
    await page.get_by_text("chính sách mặc định của hệ thống").wait_for()
    await page.screenshot(path=SHOTS / "escalation-390.png", full_page=True)
    await ctx.close()

    # An officer of another district: a forged case URL is refused.
    ctx, page = await _sign_in(chromium, fake_telegram, OFFICER_BT)
    response = await page.goto(page.url + f"cases/{case_id}")
    assert response is not None and response.status == 403
    assert ref not in await page.content()
    await ctx.close()
