"""Zalo, equal to Telegram: registration, reports, officers and relays over the Zalo fake."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.app import App
from bot.core.clock import FakeClock
from bot.core.messages import Outbound
from bot.core.outbox import enqueue
from storage.models import Account, Incident, Outbox, OutboxStatus
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.fake_zalo import FakeZalo
from tests.auxil.helpers import eventually, invite
from tests.auxil.people import OFFICER_HX, Chat, link_everyone
from tests.conftest import make_settings

pytestmark = pytest.mark.usefixtures("directory")
SECRET = "zalo-hook-secret-123"


class ZChat:
    """One Zalo user's chat with the bot."""

    def __init__(self, fake: FakeZalo, user_id: str) -> None:
        self.fake, self.user_id = fake, user_id

    def received(self) -> list[str]:
        return self.fake.texts(self.user_id)

    async def wait(self, total: int) -> list[str]:
        await self.fake.wait_for(lambda: len(self.received()) >= total)
        return self.received()

    async def say(self, text: str, replies: int = 1, **extra) -> list[str]:
        before = len(self.received())
        self.fake.user_text(self.user_id, text, **extra)
        return (await self.wait(before + replies))[before:]

    async def send_event(self, event: dict, replies: int = 1) -> list[str]:
        before = len(self.received())
        self.fake.queue(event)
        return (await self.wait(before + replies))[before:]

    async def wait_text(self, fragment: str) -> str:
        await self.fake.wait_for(lambda: any(fragment in t for t in self.received()))
        return next(t for t in self.received() if fragment in t)


async def _link_zalo(sessions, clock, phone: str, user_id: str) -> None:
    """Move a directory person onto Zalo (their Telegram account, if any, is dropped)."""
    from bot.services.directory import normalise_phone
    from storage.models import Person

    async with sessions() as session, session.begin():
        person = (await session.execute(
            select(Person).where(Person.phone == normalise_phone(phone)))).scalar_one()
        for account in (await session.execute(
                select(Account).where(Account.person_id == person.id))).scalars():
            account.person_id = None
        session.add(Account(channel="zalo", external_id=user_id, person_id=person.id,
                            created_at=clock.now(), code_failures=0))


async def test_officer_registers_on_zalo_by_typing_the_code(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    code = await invite(sessions, clock, "officer", area_code="HX", person_phone="0912345678")
    user = ZChat(fake_zalo, "z-officer-1")
    [done] = await user.say(code)
    assert "Đăng ký thành công" in done and "Xã Hồi Xuân" in done
    assert "2. Trang quản lý (web)" in done and "Trả lời bằng số (1–5)." in done  # numbered menu
    async with sessions() as session:
        account = (await session.execute(select(Account).where(
            Account.channel == "zalo", Account.external_id == "z-officer-1"))).scalar_one()
    assert account.person.phone == "+84912345678"


async def test_numbered_menu_answers_by_number_or_by_label(
        app: App, fake_zalo: FakeZalo) -> None:
    user = ZChat(fake_zalo, "z-lang")
    [menu] = await user.say("/language")
    assert "1. Tiếng Việt\n2. English\nTrả lời 1 hoặc 2." in menu
    assert (await user.say("2")) == ["Switched to English."]
    await user.say("/language")
    assert (await user.say("tiếng việt")) == ["Đã chuyển sang tiếng Việt."]


async def test_full_report_and_acknowledgement_over_zalo(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    await _link_zalo(sessions, clock, "0912345678", "z-officer")
    teacher = ZChat(fake_zalo, "z-teacher")
    [danger] = await teacher.say("/report")
    assert "1. Có, đang nguy hiểm\n2. Không" in danger
    [category] = await teacher.say("2")
    assert "1. Bạo lực thể chất" in category and "11. Khác" in category
    await teacher.say("2")  # bullying
    await teacher.say("Các em lớp 9 chặn đường, lấy tiền của học sinh lớp 6.")
    await teacher.say("Hôm nay")  # the option's words work as well as its number
    await teacher.say("Cổng sau của trường")
    await teacher.say("3 em, 11 tuổi")
    [summary] = await teacher.say("1")  # show my name
    assert "Kiểm tra lại báo cáo" in summary and "1. Gửi" in summary
    [received] = await teacher.say("1")
    [incident] = (await _all(sessions, Incident))
    assert incident.ref in received and incident.place == "Cổng sau của trường"

    officer = ZChat(fake_zalo, "z-officer")
    [alert] = await officer.wait(1)
    assert incident.ref in alert and "1. ✅ Tiếp nhận" in alert
    [ack] = await officer.say("1")
    assert "Đồng chí đã tiếp nhận" in ack
    assert "đã tiếp nhận" in await teacher.wait_text("Công an phụ trách địa bàn đã tiếp nhận")
    [incident] = (await _all(sessions, Incident))
    assert incident.status == "acknowledged"


async def test_a_message_zalo_withholds_mid_report_keeps_the_report_where_it_was(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    """Zalo sends message.unsupported.received for adults' links, documents and contact
    cards too: the teacher is told what happened, and the question they were at is asked
    again, not replaced by 'this is a child's account'."""
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    teacher = ZChat(fake_zalo, "z-teacher")
    await teacher.say("/report")
    await teacher.say("2")  # not in danger now
    await teacher.say("2")  # bullying
    [told, asked] = await teacher.send_event(
        fake_zalo.event("z-teacher", "message.unsupported.received"), replies=2)
    assert "Zalo không cho bot đọc tin nhắn vừa rồi" in told and "bằng chữ hoặc bằng ảnh" in told
    assert "111" in told
    assert "mô tả" in asked.lower()  # the description question, again
    [when] = await teacher.say("Các em lớp 9 chặn đường, lấy tiền của học sinh lớp 6.")
    assert "khi nào" in when.lower()  # the report went on from where it was


async def test_typed_answers_work_as_people_type_them(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    """No diacritics, a start of a label, an ambiguous start answered with just the
    candidates, and a number that is the answer itself at "how many children?"."""
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    teacher = ZChat(fake_zalo, "z-teacher")
    await teacher.say("/report")
    await teacher.say("khong")  # "Không" (not in danger now), typed without diacritics
    [which] = await teacher.say("bao luc")  # physical violence, or family violence?
    assert "Xin chọn một mục:" in which
    assert "1. Bạo lực thể chất\n2. Bạo lực gia đình" in which and "3." not in which
    [described] = await teacher.say("2")
    assert "mô tả" in described.lower()
    await teacher.say("Bố đánh em nhiều lần, em có vết bầm ở tay.")
    await teacher.say("hom nay")
    await teacher.say("Ở nhà")
    [next_step] = await teacher.say("1")  # one child: not option 1 ("Không rõ")
    assert "cho công an biết danh tính" in next_step.lower()
    await teacher.say("1")
    await teacher.say("1")  # send
    [incident] = await _all(sessions, Incident)
    assert incident.category == "family_violence" and incident.children == "1"


async def test_an_officer_who_types_a_word_keeps_the_alert_options_and_a_reporter_answers_directly(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    await _link_zalo(sessions, clock, "0912345678", "z-officer")
    teacher, officer = ZChat(fake_zalo, "z-teacher"), ZChat(fake_zalo, "z-officer")
    for answer in ("/report", "2", "2", "Các em lớp 9 chặn đường lấy tiền.", "1", "Cổng",
                   "2 em", "1"):
        await teacher.say(answer)
    await teacher.say("1")  # send
    [incident] = await _all(sessions, Incident)
    [alert] = await officer.wait(1)
    assert incident.ref in alert
    [again] = await officer.say("xem sau")  # no option: the alert's options, not the menu
    assert "1. ✅ Tiếp nhận" in again and "Báo cáo" not in again
    [ack] = await officer.say("1")
    assert "Đồng chí đã tiếp nhận" in ack

    await officer.say("2")  # ask the reporter (after the ack: view, ask, note, …)
    [sent] = await officer.say("Các em bị lấy bao nhiêu tiền?")
    assert incident.ref in sent
    await teacher.wait_text("Các em bị lấy bao nhiêu tiền?")
    [relayed] = await teacher.say("Khoảng 50 nghìn mỗi em.")  # typed, no Reply first
    assert "Đã chuyển câu trả lời" in relayed
    answer = await officer.wait_text("Khoảng 50 nghìn mỗi em.")
    assert incident.ref in answer
    [menu] = await teacher.say("cảm ơn")  # answered: no question waits any more
    assert "Đã chuyển câu trả lời" not in menu


async def test_a_withheld_message_leaves_the_offered_options_open(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    teacher = ZChat(fake_zalo, "z-teacher")
    [menu] = await teacher.say("/menu")
    assert menu.count("\n1. ") == 1 and "Báo cáo" in menu.split("\n1. ")[1].split("\n")[0]
    await teacher.send_event(fake_zalo.event("z-teacher", "message.unsupported.received"))
    [asked] = await teacher.say("1")  # still the menu's first option
    assert "nguy hiểm" in asked


async def test_a_withheld_message_without_a_message_object_is_answered_once(
        app: App, fake_zalo: FakeZalo, sessions) -> None:
    bare = {"event_name": "message.unsupported.received",
            "from": {"id": "z-bare", "display_name": "Ba", "is_bot": False}}
    [told] = await ZChat(fake_zalo, "z-bare").send_event(bare)
    assert "Zalo không cho bot đọc" in told
    fake_zalo.queue(dict(bare))  # delivered again: the same event, not a new one
    fake_zalo.user_text("z-bare", "/help")
    await ZChat(fake_zalo, "z-bare").wait(2)
    assert len(ZChat(fake_zalo, "z-bare").received()) == 2


async def test_zalo_prompts_speak_of_what_zalo_can_do(
        app: App, fake_zalo: FakeZalo, fake_telegram: FakeTelegram, sessions, clock) -> None:
    """No buttons to press, no video, no location to share on Zalo; a long menu's hint is a
    range; the same flow on Telegram keeps its own words."""
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    teacher = ZChat(fake_zalo, "z-teacher")
    await teacher.say("/report")
    [categories] = await teacher.say("2")
    assert categories.endswith("Trả lời bằng số (1–11).")
    [describe] = await teacher.say("2")
    await teacher.say("Các em lớp 9 chặn đường lấy tiền.")
    [where] = await teacher.say("1")
    said = "\n".join(teacher.received()).lower()
    assert "video" not in describe.lower() and "vị trí" not in where.lower()
    assert "bấm" not in said and "nút" not in said
    on_telegram = Chat(fake_telegram, 902)  # another liaison, on Telegram
    await on_telegram.say("/report")
    await on_telegram.tap("report:danger:no")
    [described_tg] = await on_telegram.tap("report:cat:bullying")
    assert "video" in described_tg


async def test_cross_channel_case_zalo_teacher_telegram_officer(
        app: App, fake_zalo: FakeZalo, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    teacher = ZChat(fake_zalo, "z-teacher")
    await teacher.say("/report")
    await teacher.say("2")
    await teacher.say("1")  # physical violence
    image = fake_zalo.event("z-teacher", "message.image.received",
                            photo_url="https://zalo-cdn.example/img/abc.jpg",
                            caption="Vết bầm trên tay em học sinh.")
    await teacher.send_event(image, replies=2)
    await teacher.say("1")  # now
    await teacher.say("1")  # skip place
    await teacher.say("1")  # one child (a number is the answer here)
    await teacher.say("2")  # anonymous
    await teacher.say("1")  # send
    [incident] = await _all(sessions, Incident)
    assert [(a.channel, a.ref) for a in incident.attachments] == [
        ("zalo", "https://zalo-cdn.example/img/abc.jpg")]

    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:view:{incident.id}", replies=2)
    [photo] = fake_telegram.sent(OFFICER_HX, "sendPhoto")
    assert photo["photo"] == "https://zalo-cdn.example/img/abc.jpg"
    await officer.tap(f"case:ask:{incident.id}")
    await officer.say("Em học lớp nào?")
    question = await teacher.wait_text("Em học lớp nào?")
    assert "1. Trả lời" in question
    await teacher.say("1")
    seen = officer.mark()
    await teacher.say("Lớp 6B.")
    [relayed] = await officer.since(seen)
    assert "Người báo tin ẩn danh" in relayed and "Lớp 6B" in relayed
    await officer.tap(f"case:close:{incident.id}")
    await officer.tap(f"case:close:{incident.id}:handled_by_police")
    outcome = await teacher.wait_text("đã được giải quyết")
    assert "Công an đã xử lý vụ việc." in outcome




async def test_long_message_is_split_at_sensible_boundaries(
        app: App, fake_zalo: FakeZalo, sessions, clock) -> None:
    paragraph = ("Cha mẹ hãy trò chuyện với con mỗi ngày về những gì con gặp trên mạng. " * 12)
    text = "\n\n".join([paragraph.strip()] * 6)
    async with sessions() as session, session.begin():
        account = Account(channel="zalo", external_id="z-long", created_at=clock.now(),
                          code_failures=0)
        session.add(account)
        await session.flush()
        await enqueue(session, account, Outbound(text), key="test:zalo-long", now=clock.now())
    app.worker.wake()

    async def all_sent() -> bool:
        rows = await _all(sessions, Outbox)
        return bool(rows) and all(r.status == OutboxStatus.SENT for r in rows)

    await eventually(all_sent)
    parts = [p["text"] for p in fake_zalo.sent("z-long")]
    assert len(text) > 4000 and len(parts) == 3
    assert all(len(p) <= 2000 for p in parts)
    assert all(p.endswith(".") for p in parts)  # cut between paragraphs, not mid-word
    assert "\n\n".join(parts) == text


async def test_zalo_quirks_ok_false_429_and_unsupported_senders(
        app: App, fake_zalo: FakeZalo, sessions, clock: FakeClock) -> None:
    user = ZChat(fake_zalo, "z-quirk")
    fake_zalo.fail("sendMessage", status=200, error_code=500, description="internal")
    fake_zalo.user_text("z-quirk", "/help")

    async def retry_pending() -> bool:
        rows = await _all(sessions, Outbox)
        return [(r.status, r.attempts) for r in rows] == [(OutboxStatus.PENDING, 1)]

    await eventually(retry_pending)  # HTTP 200 with ok=false was not taken for success
    clock.advance(5)
    [help_text] = await user.wait(1)
    assert "111" in help_text

    fake_zalo.fail("sendMessage", status=429, error_code=429, description="quota exceeded")
    protected = fake_zalo.event("z-child", "message.unsupported.received")
    fake_zalo.queue(protected)

    async def paused() -> bool:
        rows = await _all(sessions, Outbox)
        return len(rows) == 2 and rows[1].status == OutboxStatus.PENDING and \
            rows[1].last_error is not None

    await eventually(paused)
    clock.advance(29)
    await app.worker.settled()  # the worker looked and held the row: Zalo said 30 s
    assert ZChat(fake_zalo, "z-child").received() == []
    clock.advance(2)
    [explained] = await ZChat(fake_zalo, "z-child").wait(1)
    assert "người lớn" in explained and "111" in explained


@pytest.mark.parametrize("fault", [
    {"raw": "<html><body>502 Bad Gateway</body></html>"},  # a 200 that is not JSON
    {"error_code": None, "description": "system error"},  # {ok: false} without a code
])
async def test_an_answer_zalo_gives_no_reason_for_is_retried_not_dropped(
        fault: dict, app: App, fake_zalo: FakeZalo, sessions, clock: FakeClock) -> None:
    fake_zalo.fail("sendMessage", status=200, **fault)
    fake_zalo.user_text("z-edge", "/help")

    async def waiting_for_retry() -> bool:
        rows = await _all(sessions, Outbox)
        return [(r.status, r.attempts) for r in rows] == [(OutboxStatus.PENDING, 1)]

    await eventually(waiting_for_retry)  # not DEAD: the message was not the problem
    clock.advance(5)
    [help_text] = await ZChat(fake_zalo, "z-edge").wait(1)
    assert "111" in help_text


async def test_nothing_new_answered_as_200_ok_false_is_an_empty_poll(
        database_url, fake_telegram: FakeTelegram, fake_zalo: FakeZalo, clock,
        caplog: pytest.LogCaptureFixture) -> None:
    fake_zalo.nothing_new_status = 200
    application = App(make_settings(database_url, fake_telegram, zalo=fake_zalo), clock)
    await application.start()
    try:
        await eventually(lambda: sum(c.method == "getUpdates" for c in fake_zalo.calls) >= 2)
        [answer] = await ZChat(fake_zalo, "z-poll-200").say("/help")
        assert "111" in answer
        assert not [r for r in caplog.records if "Zalo polling failed" in r.getMessage()]
    finally:
        await application.stop()


async def test_polling_removes_a_leftover_webhook_first(
        database_url, fake_telegram, fake_zalo: FakeZalo, clock) -> None:
    fake_zalo.webhook_url = "https://old.example.org/hook"
    application = App(make_settings(database_url, fake_telegram, zalo=fake_zalo), clock)
    await application.start()
    try:
        assert [c.method for c in fake_zalo.calls][:3] == [
            "getMe", "getWebhookInfo", "deleteWebhook"]
        assert (await ZChat(fake_zalo, "z-poll").say("/help"))[0].startswith("SafeSchool")
    finally:
        await application.stop()


async def _all(sessions, model) -> list:
    async with sessions() as session:
        return list((await session.execute(select(model).order_by(model.id))).scalars())


async def test_link_both_messengers_and_choose_where_alerts_go(
        app: App, fake_zalo: FakeZalo, fake_telegram: FakeTelegram, sessions, clock) -> None:
    await link_everyone(sessions, clock)
    officer_tg = Chat(fake_telegram, OFFICER_HX)
    [shown] = await officer_tg.say("/link")
    code = shown.split(": ", 1)[1].split()[0]
    officer_zalo = ZChat(fake_zalo, "z-officer-linked")
    [linked] = await officer_zalo.say(code)
    assert "Đã liên kết" in linked and "Telegram, Zalo" in linked
    [again] = await ZChat(fake_zalo, "z-thief").say(code)  # single use
    assert "hết hạn" in again
    [prompt] = await officer_zalo.say("/alerts")
    assert "1. Telegram\n2. Zalo" in prompt
    [chosen] = await officer_zalo.say("2")
    assert "Zalo" in chosen

    teacher = Chat(fake_telegram, 901)
    from tests.test_reports import file_report

    await file_report(teacher)
    [incident] = await _all(sessions, Incident)
    alert = await officer_zalo.wait_text(incident.ref)
    assert "Vụ việc mới" in alert
    assert not any(incident.ref in t for t in officer_tg.received())


async def test_files_known_by_url_are_kept_and_shown_from_our_copy(
        app: App, fake_zalo: FakeZalo, fake_telegram: FakeTelegram, sessions, clock,
        tmp_path) -> None:
    from storage.media import keep_remote_media
    from storage.models import IncidentAttachment

    await link_everyone(sessions, clock)
    await _link_zalo(sessions, clock, "0901234567", "z-teacher")
    jpeg = b"\xff\xd8\xff\xe0" + b"photo-bytes" * 100
    fake_zalo.cdn["bruise.jpg"] = ("image/jpeg", jpeg)
    fake_zalo.cdn["page.html"] = ("text/html", b"<html>login</html>")
    teacher = ZChat(fake_zalo, "z-teacher")
    await teacher.say("/report")
    await teacher.say("2")
    await teacher.say("1")
    for name in ("bruise.jpg", "gone.jpg", "page.html"):
        await teacher.send_event(fake_zalo.event(
            "z-teacher", "message.image.received", photo=fake_zalo.cdn_url(name)), replies=2)
    await teacher.say("Vết thương trên người em.")
    for answer in ("1", "1", "1", "2", "1"):
        await teacher.say(answer)
    [incident] = await _all(sessions, Incident)

    assert await keep_remote_media(sessions, tmp_path / "media") == 1
    rows = await _all(sessions, IncidentAttachment)
    kept = [r for r in rows if r.stored_path]
    assert len(kept) == 1 and kept[0].ref.endswith("bruise.jpg")
    assert (tmp_path / "media" / str(incident.id)).is_dir()
    from pathlib import Path

    on_disk = Path(kept[0].stored_path).read_bytes()  # noqa: ASYNC240
    assert jpeg[:64] not in on_disk and jpeg[-64:] not in on_disk  # encrypted at rest
    assert not list((tmp_path / "media").rglob("*.part"))  # nor ever written in the clear
    from storage import crypto

    assert crypto.read_file(kept[0].stored_path) == jpeg
    assert [r.fetch_attempts for r in rows] == [1, 1, 1]
    assert await keep_remote_media(sessions, tmp_path / "media") == 0  # kept: not again

    del fake_zalo.cdn["bruise.jpg"]  # the sender's link expires...
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:view:{incident.id}", replies=4)
    photos = fake_telegram.sent(OFFICER_HX, "sendPhoto")
    assert len(photos) == 3
    uploaded = [p["photo"] for p in photos if not isinstance(p["photo"], str)]
    assert uploaded == [jpeg]  # ...our copy still works


