"""The web chat in a real browser (Playwright driving Debian's Chromium, 390 px wide): a
teacher registers and reports with buttons and a photo; the backup officer in another
browser and the primary officer on the fake Telegram receive the alert; a public report's
reporter, in a fresh browser, comes back with the follow-up code and answers the officer's
question, while a forged code gets nothing. Screenshots land in build/screenshots/."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from sqlalchemy import select, update

from bot.core.i18n import Translator
from storage.models import Account, Incident, Person, School
from tests.auxil.helpers import invite
from tests.auxil.people import OFFICER_HX, PHONES, Chat
from tests.test_console_browser import PHONE, SHOTS, chromium  # noqa: F401 (a fixture)
from tests.test_web_chat import PNG

VI = Translator("vi")
WEB = Translator("vi", "web")


async def _officer_on_telegram(sessions, clock) -> None:
    """The primary officer of HX reads alerts on (the fake) Telegram."""
    async with sessions() as session, session.begin():
        person = (await session.execute(select(Person).where(
            Person.phone == "+84" + PHONES[OFFICER_HX][1:]))).scalar_one()
        session.add(Account(channel="telegram", external_id=str(OFFICER_HX),
                            person_id=person.id, created_at=clock.now(), code_failures=0))


async def _persona(browser, url: str):
    context = await browser.new_context(locale="vi-VN", viewport=PHONE)
    page = await context.new_page()
    await page.goto(url)
    return context, page


async def _type(page, text: str) -> None:
    await page.get_by_role("textbox", name=WEB("web_chat.placeholder")).fill(text)
    await page.get_by_role("button", name=WEB("web_chat.send"), exact=True).click()


async def _tap(page, label: str) -> None:
    """Press the latest button with this label in the conversation."""
    await page.locator("#log").get_by_role("button", name=label, exact=True).last.click()


async def _bot_says(page, fragment: str) -> None:
    await page.locator("li.bot p", has_text=fragment).last.wait_for(timeout=15_000)


async def _register(page, code: str) -> None:
    """Register with an invitation made out to a person of the directory."""
    await _type(page, code)
    await _bot_says(page, "Đăng ký thành công")


async def test_the_web_chat_in_a_browser(app, directory, sessions, clock, fake_telegram,
                                         chromium):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    await _officer_on_telegram(sessions, clock)
    telegram_officer = Chat(fake_telegram, OFFICER_HX)
    base = f"http://127.0.0.1:{app.http_port}"
    teacher_code = await invite(sessions, clock, "liaison", school_code="THCS-HX",
                                person_phone=PHONES[901])
    backup_code = await invite(sessions, clock, "officer", area_code="HX",
                               person_phone=PHONES[912])

    # The backup officer and the teacher, each in a browser of their own.
    officer_ctx, officer = await _persona(chromium, f"{base}/chat/")
    await officer.get_by_role("button", name=WEB("web_chat.send"), exact=True).wait_for()
    officer_ctx_cookies = await officer_ctx.cookies()
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in officer_ctx_cookies)
    await _register(officer, backup_code)
    teacher_ctx, teacher = await _persona(chromium, f"{base}/chat/")
    await _register(teacher, teacher_code)
    width = await teacher.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the chat scrolls sideways on a phone ({width} px)"

    # An urgent report with buttons: the alert reaches both officers before any detail.
    seen = telegram_officer.mark()
    await _tap(teacher, VI("menu.report"))
    await _tap(teacher, VI("report.danger.yes"))
    await _bot_says(teacher, "Đã báo khẩn")
    async with sessions() as session:
        ref = (await session.execute(select(Incident.ref))).scalar_one()
    [alert] = await telegram_officer.since(seen)
    assert ref in alert
    await _bot_says(officer, ref)
    await officer.screenshot(path=SHOTS / "webchat-officer-alert-390.png", full_page=True)

    # The details, with a photo from the phone's gallery.
    await _tap(teacher, VI("category.physical"))
    await _bot_says(teacher, "mô tả ngắn gọn")
    await teacher.locator("#file").set_input_files(
        files=[{"name": "cong-truong.png", "mimeType": "image/png", "buffer": PNG}])
    await _bot_says(teacher, VI("attachment.saved", count=1))
    await _type(teacher, "Hai học sinh đánh nhau ở cổng trường, một em bị thương nhẹ")
    await _tap(teacher, VI("report.when.now"))
    await _tap(teacher, VI("report.skip"))
    await _tap(teacher, VI("report.unknown"))
    await _tap(teacher, VI("report.anonymous.no"))
    await _bot_says(teacher, VI("report.summary.attachments", value=1))
    await _tap(teacher, VI("report.send"))
    await _bot_says(teacher, VI("report.details_added", ref=ref))
    await teacher.screenshot(path=SHOTS / "webchat-teacher-report-390.png", full_page=True)
    async with sessions() as session:
        incident = (await session.execute(select(Incident))).scalar_one()
        assert len(incident.attachments) == 1 and incident.attachments[0].stored_path

    # The backup officer takes it up from the alert's button.
    await _tap(officer, VI("case.action.ack"))
    await _bot_says(teacher, VI("reporter.acknowledged", ref=ref))  # told it was taken up
    async with sessions() as session:
        assert (await session.get(Incident, incident.id)).acknowledged_at is not None
    await officer_ctx.close()
    await teacher_ctx.close()


async def test_a_public_reporter_answers_from_the_follow_up_page(
        app, directory, sessions, clock, fake_telegram, chromium):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    await _officer_on_telegram(sessions, clock)
    officer = Chat(fake_telegram, OFFICER_HX)
    async with sessions() as session, session.begin():
        await session.execute(update(School).where(School.code == "THCS-HX")
                              .values(public_reports=True))
    base = f"http://127.0.0.1:{app.http_port}"

    # Anyone, on the school's public page: an urgent report in four taps.
    context, page = await _persona(chromium, f"{base}/chat/s/THCS-HX")
    await page.screenshot(path=SHOTS / "webchat-public-390.png", full_page=True)
    seen = officer.mark()
    await page.get_by_role("button", name=WEB("web_chat.public.start")).click()
    await _tap(page, VI("report.danger.yes"))
    await _bot_says(page, "Mã theo dõi")
    text = await page.locator("li.bot p", has_text="Mã theo dõi").last.inner_text()
    ref = re.search(r"Mã vụ việc: (\S+)", text).group(1)
    code = re.search(r"Mã theo dõi: (\S+)", text).group(1)
    [alert] = await officer.since(seen)
    assert ref in alert
    await page.screenshot(path=SHOTS / "webchat-public-code-390.png", full_page=True)
    await context.close()

    # The officer asks a question (on Telegram).
    async with sessions() as session:
        case_id = (await session.execute(
            select(Incident.id).where(Incident.ref == ref))).scalar_one()
    await officer.tap(f"case:ask:{case_id}")
    await officer.say("Các em học lớp mấy?")

    # Later, another browser: a forged code gets nothing, the right one the question.
    context, page = await _persona(chromium, f"{base}/chat/f")
    forged = code[:-1] + ("A" if code[-1] != "A" else "B")
    await page.get_by_label(WEB("web_chat.followup.ref")).fill(ref)
    await page.get_by_label(WEB("web_chat.followup.code")).fill(forged)
    await page.get_by_role("button", name=WEB("web_chat.followup.submit")).click()
    await _bot_says(page, VI("code.invalid"))
    assert await page.locator("li.bot p", has_text="Các em học lớp mấy?").count() == 0
    await page.get_by_label(WEB("web_chat.followup.code")).fill(code)
    await page.get_by_role("button", name=WEB("web_chat.followup.submit")).click()
    await _bot_says(page, "Các em học lớp mấy?")
    await page.screenshot(path=SHOTS / "webchat-followup-390.png", full_page=True)
    seen = officer.mark()
    await _tap(page, VI("reporter.reply"))
    await _bot_says(page, VI("reporter.reply.prompt", ref=ref))
    await _type(page, "Lớp 6B ạ")
    [answer] = await officer.since(seen)
    assert "Lớp 6B ạ" in answer and VI("case.reporter.anonymous") in answer
    await context.close()


async def test_the_demo_starts_and_its_personas_work(tmp_path, chromium):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFESCHOOL_")}
    env["SAFESCHOOL_TELEGRAM_TOKEN"] = "123:must-not-be-used"  # the demo ignores it
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", "--port", "0", "--no-browser",
        "--dir", str(tmp_path / "demo"), env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    try:
        first = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        url = re.search(r"(http://\S+/chat/demo)", first).group(1)
        context = await chromium.new_context(locale="vi-VN",
                                             viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        await page.goto(url)
        frames = {slug: page.frame_locator(f'[data-persona="{slug}"] iframe')
                  for slug in ("teacher", "officer", "backup", "chief", "parent", "admin")}
        for slug, frame in frames.items():  # each persona is someone: their own menu
            await page.locator(f'[data-persona="{slug}"]').scroll_into_view_if_needed()
            await frame.get_by_role("button", name=WEB("web_chat.menu")).click()
            await frame.locator("li.bot .choices button").first.wait_for(timeout=15_000)
        await page.locator('[data-persona="teacher"]').scroll_into_view_if_needed()
        await frames["teacher"].locator("#log").get_by_role(
            "button", name=VI("menu.report"), exact=True).last.click()
        await frames["teacher"].locator("#log").get_by_role(
            "button", name=VI("report.danger.yes"), exact=True).last.click()
        await frames["teacher"].locator("li.bot p", has_text="Đã báo khẩn").wait_for()
        text = await frames["teacher"].locator("li.bot p", has_text="Đã báo khẩn").inner_text()
        ref = re.search(r"Mã vụ việc: (\S+)\.", text).group(1)
        for slug in ("officer", "backup"):
            await page.locator(f'[data-persona="{slug}"]').scroll_into_view_if_needed()
            await frames[slug].locator("li.bot p", has_text=ref).first.wait_for(timeout=15_000)
        # Nobody takes it up: with the fast clock, the chief hears of it in seconds.
        await page.locator("#fast").scroll_into_view_if_needed()
        await page.locator("#fast").check()
        await frames["chief"].locator("li.bot p", has_text=ref).first.wait_for(timeout=60_000)
        await page.screenshot(path=SHOTS / "demo.png", full_page=True)
        await context.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
