"""The web chat (bot/channels/web.py) through its HTTP API, the way the page drives it: a
school's public report page from the first question to the follow-up code, the officer's
question answered from another browser, a forged code refused; each visitor sees only their
own messages and files; CSRF, upload size and rate limits; `safeschool run` with no token."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
from sqlalchemy import select, update
from yarl import URL

from bot.app import App
from bot.channels.web import visitor_of
from bot.cli.keys import KEY_SETTINGS
from bot.core.i18n import Translator
from bot.core.messages import Media, Outbound
from storage import crypto
from storage.models import (
    AuditEvent,
    InboxItem,
    Incident,
    IncidentAttachment,
    School,
    WebMessage,
)
from tests.auxil.console import browser, csrf_of, link_admin, sign_in
from tests.auxil.helpers import count, eventually, parent_code
from tests.auxil.people import OFFICER_HX, Chat, add_province_admin, link_everyone
from tests.auxil.web import Visitor
from tests.conftest import make_settings
from tests.test_console import ADMIN_CHAT

VI = Translator("vi")
VI_WEB = Translator("vi", "web")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2b0a1a70000000049454e44ae426082")


async def open_public_page(sessions, school: str = "THCS-HX") -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(School).where(School.code == school)
                              .values(public_reports=True))


async def report_in_public(visitor: Visitor) -> tuple[str, str]:
    """Report a non-urgent case from a school's public page, a photo with the description;
    return (reference, follow-up code) as the page showed them."""
    assert (await visitor.open("/chat/s/THCS-HX")).status == 200
    assert await visitor.say("/public THCS-HX") == [VI("report.danger")]
    await visitor.tap(VI("report.danger.no"))
    await visitor.tap(VI("category.physical"))
    form = aiohttp.FormData()
    form.add_field("file", PNG, filename="cong-truong.png", content_type="image/png")
    before = len(visitor.seen)
    uploaded = await visitor.http.post(f"{visitor.api}/upload", params={"id": "photo-0001"},
                                       data=form, headers={"X-CSRF-Token": visitor.csrf})
    assert uploaded.status == 200
    await visitor.wait(before + 2)  # "1 file kept" and the description asked again
    await visitor.say("Một học sinh lớp 7 bị đánh ở cổng trường")
    await visitor.tap(VI("report.when.now"))
    before = len(visitor.seen)
    shared = await visitor.post({"location": [20.3737, 105.1186]})  # the browser's location
    assert shared.status == 200
    await visitor.wait(before + 1)
    [summary] = await visitor.tap(VI("report.unknown"))
    assert VI("report.summary.attachments", value=1) in summary
    assert VI("report.summary.where", value=VI("report.where.location")) in summary
    assert VI("report.summary.anonymous", value=VI("report.anonymous.yes")) in summary
    received, code_text = await visitor.tap(VI("report.send"), replies=2)
    ref = re.search(r"Mã vụ việc: (\S+)\.", received).group(1)
    code = re.search(r"Mã theo dõi: (\S+)", code_text).group(1)
    return ref, code


async def test_a_public_report_reaches_the_officer_and_its_reporter_comes_back_by_code(
        app, directory, sessions, clock, fake_telegram):
    await link_everyone(sessions, clock)
    base = f"http://127.0.0.1:{app.http_port}"
    stranger = Visitor(base, kind="public")
    reporter = Visitor(base, kind="public")
    elsewhere = Visitor(base, kind="public")
    try:
        # Off by default: the page says nothing about the school, and /public is refused.
        assert (await stranger.open("/chat/s/THCS-HX")).status == 404
        assert (await stranger.open("/chat/s/NO-SUCH")).status == 404
        assert (await stranger.open("/chat/f")).status == 200
        assert await stranger.say("/public THCS-HX") == [VI("public.closed")]

        await open_public_page(sessions)
        officer = Chat(fake_telegram, OFFICER_HX)
        seen = officer.mark()
        ref, code = await report_in_public(reporter)
        [alert] = await officer.since(seen)
        assert ref in alert and "cổng trường" in alert
        async with sessions() as session:
            incident = (await session.execute(
                select(Incident).where(Incident.ref == ref))).scalar_one()
            assert incident.anonymous and incident.reporter_person_id is None
            assert (incident.latitude, incident.longitude) == (20.3737, 105.1186)
            assert incident.followup_hash is not None and code not in incident.followup_hash
            [photo] = (await session.execute(select(IncidentAttachment).where(
                IncidentAttachment.incident_id == incident.id))).scalars().all()
        assert photo.stored_path and crypto.read_file(photo.stored_path) == PNG
        on_disk = await asyncio.to_thread(Path(photo.stored_path).read_bytes)
        assert PNG not in on_disk  # encrypted at rest

        # The officer asks; the reporter's own browser hears it.
        await officer.tap(f"case:ask:{incident.id}")
        await officer.say("Em học sinh bị đánh học lớp nào?")
        await reporter.wait(len(reporter.seen) + 1)
        assert "Em học sinh bị đánh học lớp nào?" in reporter.texts()[-1]

        # Another browser: a forged code gets nothing, the right one the case and the question.
        assert (await elsewhere.open("/chat/f")).status == 200
        forged = code[:-1] + ("A" if code[-1] != "A" else "B")
        assert await elsewhere.say(f"/followup {ref} {forged}") == [VI("code.invalid")]
        assert await elsewhere.say(f"/followup XX-26-NOPE {code}") == [VI("code.invalid")]
        assert await elsewhere.say("/mycases") == [VI("me.stranger")]
        status, question = await elsewhere.say(f"/followup {ref} {code}", replies=2)
        assert ref in status and VI(f"reporter_status.{incident.status}") in status
        assert "Em học sinh bị đánh học lớp nào?" in question
        seen = officer.mark()
        await elsewhere.tap(VI("reporter.reply"))
        await elsewhere.say("Lớp 7A")
        [answer] = await officer.since(seen)
        assert "Lớp 7A" in answer and VI("case.reporter.anonymous") in answer
        # A public page's browser stays nobody: no registration codes, no /link.
        assert await elsewhere.say("/link") == [VI("public.no_codes")]
    finally:
        for visitor in (stranger, reporter, elsewhere):
            await visitor.close()


async def test_a_visitor_sees_only_their_own_messages_and_files(app, directory, sessions,
                                                                tmp_path):
    base = f"http://127.0.0.1:{app.http_port}"
    alice, bob = Visitor(base), Visitor(base)
    try:
        await alice.open()
        await bob.open()
        await alice.say("/start")
        await bob.say("/help")
        assert len(await alice.messages()) == 1 and len(await bob.messages()) == 1
        assert alice.seen[0]["text"] != bob.seen[0]["text"]
        # A file the bot sends Alice (our own encrypted copy) is hers alone.
        kept = tmp_path / "chart.png"
        kept.write_bytes(crypto.seal_bytes(PNG))
        token = alice.http.cookie_jar.filter_cookies(URL(base + "/chat/"))["safeschool_chat"].value
        message_id = await app.channels["web"].send(
            visitor_of("chat", token), Outbound("Biểu đồ", media=Media(
                "photo", str(kept), "web", str(kept))))
        mine = await alice.http.get(f"{alice.api}/file/{message_id}")
        assert mine.status == 200 and await mine.read() == PNG
        theirs = await bob.http.get(f"{bob.api}/file/{message_id}")
        assert theirs.status == 404
        assert all(m["id"] != int(message_id) for m in await bob.messages())
        # Nor is the public identity of the same browser the chat's.
        public = await alice.http.get(f"{base}/chat/api/public/file/{message_id}")
        assert public.status == 401
    finally:
        await alice.close()
        await bob.close()


async def test_csrf_upload_size_and_the_public_rate_limit(database_url, fake_telegram,
                                                           directory, sessions, clock,
                                                           tmp_path):
    settings = make_settings(database_url, fake_telegram, media_dir=tmp_path / "media",
                             web_public_per_minute=3, web_public_new_per_hour=2)
    app = App(settings, clock)
    await app.start()
    base = f"http://127.0.0.1:{app.http_port}"
    visitor, other = Visitor(base), Visitor(base)
    try:
        await visitor.open()
        await other.open()
        stored = await count(sessions, InboxItem)
        assert (await visitor.post({"text": "/start"}, csrf=False)).status == 403
        visitor.csrf, other.csrf = other.csrf, visitor.csrf  # each other's token
        assert (await visitor.post({"text": "/start"})).status == 403
        visitor.csrf, other.csrf = other.csrf, visitor.csrf
        assert (await visitor.post({"text": "/start"})).status == 200  # the same page, right
        assert await count(sessions, InboxItem) == stored + 1

        # An upload larger than allowed is refused from its headers: the body never comes.
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        cookie = "; ".join(f"{c.key}={c.value}" for c in visitor.http.cookie_jar)
        writer.write((f"POST /chat/api/chat/upload?id=big-upload-1 HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nCookie: {cookie}\r\nX-CSRF-Token: {visitor.csrf}\r\n"
                      "Content-Type: multipart/form-data; boundary=x\r\n"
                      f"Content-Length: {30 * 1024 * 1024}\r\n\r\n").encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert b" 413 " in status
        writer.close()
        # A phone's photo of a few megabytes goes through.
        form = aiohttp.FormData()
        form.add_field("file", PNG + bytes(5 * 1024 * 1024), filename="anh.png",
                       content_type="image/png")
        photo = await visitor.http.post(f"{visitor.api}/upload", params={"id": "photo-5mb-1"},
                                        data=form, headers={"X-CSRF-Token": visitor.csrf})
        assert photo.status == 200

        # A public page takes only so many messages a minute from one address.
        await open_public_page(sessions)
        crowd = Visitor(base, kind="public")
        await crowd.open("/chat/s/THCS-HX")
        answers = [(await crowd.post({"text": "/help"})).status for _ in range(4)]
        assert answers == [200, 200, 200, 429]
        # … and gives so many new browsers an identity an hour (the crowd's was the first
        # of two); a browser that has one keeps it.
        newcomers = [Visitor(base, kind="public") for _ in range(2)]
        statuses = [(await v.open("/chat/s/THCS-HX")).status for v in newcomers]
        assert statuses == [200, 429]
        assert (await crowd.open("/chat/s/THCS-HX")).status == 200
        for v in (crowd, *newcomers):
            await v.close()
    finally:
        await visitor.close()
        await other.close()
        await app.stop()


async def test_run_without_a_token_serves_the_web_chat(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    env.update(SAFESCHOOL_DATABASE_URL=database_url, SAFESCHOOL_HTTP_PORT="0",
               SAFESCHOOL_MEDIA_DIR=str(tmp_path / "media"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    try:
        opening = "Chưa đặt mã bot Telegram hay Zalo"
        lines: list[str] = []
        while not (lines and lines[-1].startswith(opening)):
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "safeschool run ended: " + "".join(lines)
            lines.append(line.decode())
        url = re.search(r"(http://\S+/chat/)", lines[-1]).group(1)
        async with aiohttp.ClientSession() as http, http.get(url) as page:
            assert page.status == 200
            assert VI_WEB("web_chat.title") in await page.text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_an_admin_opens_the_public_page_and_prints_its_poster(
        app, directory, sessions, clock, fake_telegram):
    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)
    chat = f"http://127.0.0.1:{app.http_port}"
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        async with client.get(f"{base}/schools/THCS-HX/report-poster") as closed:
            assert closed.status == 404  # no poster for a page nobody can open
        token = await csrf_of(client, f"{base}/invitations")
        async with client.post(f"{base}/schools/THCS-HX/public",
                               data={"on": "1"}) as refused:
            assert refused.status == 403  # no CSRF token
        async with client.get(f"{chat}/chat/s/THCS-HX") as page:
            assert page.status == 404
        async with client.post(f"{base}/schools/THCS-HX/public",
                               data={"csrf": token, "on": "1"}) as opened:
            assert opened.status == 200  # followed to the invitations page
            assert Translator("vi")("console.public.off") in await opened.text()
        async with client.get(f"{chat}/chat/s/THCS-HX") as page:
            assert page.status == 200 and "Trường THCS Hồi Xuân" in await page.text()
        async with client.get(f"{base}/schools/THCS-HX/report-poster") as poster:
            html = await poster.text()
        assert f'data-link="{chat}/chat/s/THCS-HX"' in html and 'src="data:image/svg' in html
        async with client.get(f"{base}/schools/THCS-HX/report-poster.pdf") as pdf:
            assert (await pdf.read())[:5] == b"%PDF-"
    async with sessions() as session:
        actions = (await session.execute(select(AuditEvent.action).where(
            AuditEvent.subject == "school:THCS-HX"))).scalars().all()
    assert actions == ["public_page_on"]


async def test_a_parent_joins_from_the_web_and_forget_removes_what_the_page_showed(
        app, directory, sessions):
    code = await parent_code(sessions, "THCS-HX")
    visitor = Visitor(f"http://127.0.0.1:{app.http_port}")
    try:
        await visitor.open()
        [joined] = await visitor.say(f"/start {code}")
        assert joined.startswith(VI("parent.done", school="Trường THCS Hồi Xuân")[:30])
        await visitor.say("/forget")
        assert (await visitor.post({"choice": visitor.button(VI("forget.yes"))})).status == 200

        async def farewell_alone() -> bool:  # the rest of the transcript is gone
            return [m["text"] for m in await visitor.messages()] == [VI("forget.done")]
        await eventually(farewell_alone)
        assert await count(sessions, WebMessage) == 1
    finally:
        await visitor.close()


async def test_messages_arrive_live_over_a_websocket_and_by_long_polling(app, directory):
    visitor = Visitor(f"http://127.0.0.1:{app.http_port}")
    try:
        await visitor.open()
        await visitor.say("/start")  # one message already there: replayed first
        async with visitor.http.ws_connect(f"{visitor.api}/ws?after=0",
                                           headers={"Origin": visitor.base}) as socket:
            first = await socket.receive_json(timeout=10)
            assert first["text"] == visitor.seen[0]["text"]
            assert (await visitor.post({"text": "/help"})).status == 200
            live = await socket.receive_json(timeout=10)  # pushed as it is sent
            assert live["id"] > first["id"] and live["text"] == VI_WEB("help.stranger") + \
                "\n\n" + VI_WEB("help.hotlines")
        # Where WebSockets are blocked: a long poll waits for the next message.
        waiting = asyncio.ensure_future(visitor.http.get(
            f"{visitor.api}/messages", params={"after": str(live["id"]), "wait": "1"}))
        assert (await visitor.post({"text": "/start"})).status == 200
        polled = await (await asyncio.wait_for(waiting, 10)).json()
        assert [m["text"] for m in polled["messages"]] == [first["text"]]
        # Another site's page may not open this visitor's socket with its cookie.
        refused = await visitor.http.get(f"{visitor.api}/ws",
                                         headers={"Origin": "https://evil.example",
                                                  "Connection": "Upgrade",
                                                  "Upgrade": "websocket",
                                                  "Sec-WebSocket-Version": "13",
                                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert refused.status == 403
    finally:
        await visitor.close()


async def test_a_public_browser_of_two_schools_picks_one_and_stays_anonymous(
        app, directory, sessions):
    await open_public_page(sessions)
    await open_public_page(sessions, "TH-PL")
    visitor = Visitor(f"http://127.0.0.1:{app.http_port}", kind="public")
    try:
        for school in ("THCS-HX", "TH-PL"):  # two pages, one browser
            await visitor.open(f"/chat/s/{school}")
            await visitor.say(f"/public {school}")
            await visitor.say("/cancel")
        assert await visitor.say("/report") == [VI("report.danger")]
        await visitor.tap(VI("report.danger.no"))
        [which] = await visitor.tap(VI("category.physical"))
        assert which == VI("report.school")
        await visitor.tap("Trường Tiểu học Phú Lệ")
        await visitor.say("Một em bị bạn bắt nạt trong giờ ra chơi")
        await visitor.tap(VI("report.when.now"))
        await visitor.tap(VI("report.skip"))
        [summary] = await visitor.tap(VI("report.unknown"))
        assert VI("report.summary.anonymous", value=VI("report.anonymous.yes")) in summary
        await visitor.tap(VI("report.send"), replies=2)
        async with sessions() as session:
            incident = (await session.execute(select(Incident))).scalar_one()
        assert incident.anonymous and incident.school.code == "TH-PL"
    finally:
        await visitor.close()
