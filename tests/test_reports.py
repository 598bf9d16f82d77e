"""Incident reports end to end: teacher's phone → responsible officer → case workflow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from handlers.report import read_contact
from storage.models import Incident, IncidentEvent
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.people import (
    BACKUP_HX,
    CHIEF_QH,
    LIAISON_HX,
    LIAISON_PL,
    OFFICER_BT,
    OFFICER_HX,
    PARENT_HX,
    Chat,
    link_everyone,
)

pytestmark = pytest.mark.usefixtures("directory")


@pytest.fixture
async def people(directory, sessions, clock) -> None:
    await link_everyone(sessions, clock)


async def _incidents(sessions) -> list[Incident]:
    async with sessions() as session:
        return list((await session.execute(select(Incident).order_by(Incident.id))).scalars())


async def _events(sessions, incident_id: int) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(IncidentEvent.kind).where(
            IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.id))).scalars())


async def file_report(chat: Chat, *, category: str = "bullying", anonymous: bool = False,
                      description: str = "Một nhóm học sinh lớp 8 đánh một bạn lớp 6 ở cổng "
                                          "trường sau giờ tan học.", when: str = "today") -> str:
    """Walk the whole non-urgent flow; return the confirmation text."""
    await chat.say("/report")
    await chat.tap("report:danger:no")
    assert "mô tả" in (await chat.tap(f"report:cat:{category}"))[0]
    assert "khi nào" in (await chat.say(description))[0]
    assert "ở đâu" in (await chat.tap(f"report:when:{when}"))[0]
    await chat.tap("report:skip")
    last = await chat.say("2 em, 11 và 13 tuổi")
    assert "danh tính" in last[0].lower()
    last = await chat.tap("report:anon:yes" if anonymous else "report:anon:no")
    assert "Kiểm tra lại báo cáo" in last[0]
    [received] = await chat.tap("report:send")
    return received


@pytest.mark.usefixtures("people")
async def test_liaison_report_reaches_the_primary_officer_of_the_school_area(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    received = await file_report(teacher)
    [incident] = await _incidents(sessions)
    assert "Đã nhận báo cáo" in received and incident.ref in received
    officer = Chat(fake_telegram, OFFICER_HX)
    [alert] = await officer.wait(1)
    assert incident.ref in alert and "Bắt nạt" in alert and "Trường THCS Hồi Xuân" in alert
    assert ("✅ Tiếp nhận", f"case:ack:{incident.id}") in [
        (label.split(". ", 1)[1], data) for label, data in officer.last_buttons()]
    assert incident.status == "new" and incident.category == "bullying"
    assert incident.children == "2 em, 11 và 13 tuổi"
    assert incident.occurred == incident.created_at.astimezone(app.settings.tz).strftime(
        "%d/%m/%Y")  # "today" kept as the date it was said: tomorrow it is not today
    assert not incident.urgent and not incident.anonymous
    # Not urgent: the backup and the chief are not disturbed.
    assert Chat(fake_telegram, BACKUP_HX).received() == []
    assert Chat(fake_telegram, CHIEF_QH).received() == []
    assert await _events(sessions, incident.id) == ["created", "routed", "alerted"]


@pytest.mark.usefixtures("people")
async def test_urgent_report_alerts_officers_before_any_detail_is_given(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    replies = await teacher.tap("report:danger:yes", replies=3)
    assert "113" in replies[0] and "111" in replies[0]
    [incident] = await _incidents(sessions)
    assert incident.ref in replies[1] and "loại vụ việc" in replies[2]
    # Primary and backup are alerted now, while the teacher has typed nothing.
    for chat_id in (OFFICER_HX, BACKUP_HX):
        [alert] = await Chat(fake_telegram, chat_id).wait(1)
        assert "KHẨN CẤP" in alert and incident.ref in alert
        assert "trẻ đang gặp nguy hiểm" in alert and "Trường THCS Hồi Xuân" in alert
        assert "Loại:" not in alert and "Tóm tắt: —" not in alert  # nothing known yet
    assert incident.urgent and incident.status == "new"

    await teacher.tap("report:cat:physical")
    await teacher.say("Có người lạ đang đánh một em học sinh trước cổng trường.")
    await teacher.tap("report:when:now")
    await teacher.tap("report:skip")
    await teacher.tap("report:skip")
    await teacher.tap("report:anon:no")
    [done] = await teacher.tap("report:send")
    assert incident.ref in done and "bổ sung" in done
    [incident] = await _incidents(sessions)
    assert incident.category == "physical" and "người lạ" in incident.description
    update = await Chat(fake_telegram, OFFICER_HX).wait(2)
    assert "bổ sung" in update[1] and "Bạo lực thể chất" in update[1]
    assert len(await _incidents(sessions)) == 1  # the details did not make a second case


@pytest.mark.usefixtures("people")
async def test_cancel_after_an_urgent_report_says_the_case_still_stands(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    await teacher.tap("report:danger:yes", replies=3)
    [incident] = await _incidents(sessions)
    [stopped] = await teacher.say("/cancel")
    assert incident.ref in stopped and "vẫn được công an xử lý" in stopped
    assert stopped.strip() != "Đã hủy."
    [incident] = await _incidents(sessions)
    assert incident.status == "new"  # the alert was not withdrawn
    await teacher.say("/report")  # a report not yet sent is simply dropped
    await teacher.tap("report:danger:no")
    [dropped] = await teacher.say("/cancel")
    assert "chưa được gửi" in dropped


@pytest.mark.usefixtures("people")
async def test_an_old_button_is_refused_without_breaking_the_question_on_screen(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    [danger] = await teacher.say("/report")
    question = next(p["_message_id"] for p in fake_telegram.sent(LIAISON_HX)
                    if p.get("text") == danger)
    [category] = await teacher.tap("report:danger:no")
    assert "loại vụ việc" in category
    # The answered question's buttons are taken off it (Telegram keeps the message).
    await fake_telegram.wait_for(lambda: any(
        c.method == "editMessageReplyMarkup" and int(c.params["message_id"]) == question
        for c in fake_telegram.calls), 10.0)
    [stale] = await teacher.tap("report:danger:yes")  # the first question's old button
    assert "không còn hiệu lực" in stale
    assert await _incidents(sessions) == []  # an old "yes, in danger" files nothing
    [asked] = await teacher.tap("report:cat:physical")  # the buttons on screen still work
    assert "mô tả" in asked
    await teacher.tap("report:cat:sexual")  # old again: refused, the description still due
    [typed] = await teacher.say("Hai em đánh nhau ở sân trường.")
    assert "khi nào" in typed


@pytest.mark.usefixtures("people")
async def test_a_typed_number_still_answers_after_an_old_button(
        app: App, fake_telegram: FakeTelegram) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    await teacher.tap("report:danger:no")
    await teacher.tap("report:danger:yes")
    [asked] = await teacher.say("2")
    assert "mô tả" in asked


@pytest.mark.usefixtures("people")
async def test_when_it_happened_reads_right_on_a_later_day(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    said = clock.now().astimezone(app.settings.tz)
    await file_report(Chat(fake_telegram, LIAISON_HX), when="now")
    officer = Chat(fake_telegram, OFFICER_HX)
    [incident] = await _incidents(sessions)
    await officer.wait(1)
    [details] = await officer.tap(f"case:view:{incident.id}")
    assert f"lúc {said:%H:%M} hôm nay, {said:%d/%m/%Y} (đang diễn ra khi báo tin)" in details
    clock.advance(timedelta(days=2))
    [details] = await officer.tap(f"case:view:{incident.id}")
    assert f"lúc {said:%H:%M} {said:%d/%m/%Y} (đang diễn ra khi báo tin)" in details
    assert "hôm nay" not in details and "Đang xảy ra" not in details


@pytest.mark.usefixtures("people")
async def test_area_without_officer_routes_up_the_tree(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    await file_report(Chat(fake_telegram, LIAISON_PL), category="drugs_gangs")
    [incident] = await _incidents(sessions)
    [alert] = await Chat(fake_telegram, CHIEF_QH).wait(1)
    assert incident.ref in alert and "Trường Tiểu học Phú Lệ" in alert
    assert incident.ref.startswith("PL-")
    assert Chat(fake_telegram, OFFICER_HX).received() == []


@pytest.mark.usefixtures("people")
async def test_officer_of_another_area_is_refused(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    await file_report(Chat(fake_telegram, LIAISON_HX))
    [incident] = await _incidents(sessions)
    stranger = Chat(fake_telegram, OFFICER_BT)
    [answer] = await stranger.say(f"/case {incident.ref}")
    assert "không có quyền" in answer and "cổng" not in answer
    [answer] = await stranger.tap(f"case:ack:{incident.id}")
    assert "không có quyền" in answer
    [answer] = await stranger.tap(f"case:view:{incident.id}")
    assert "không có quyền" in answer
    other_teacher = Chat(fake_telegram, LIAISON_PL)
    [answer] = await other_teacher.say(f"/case {incident.ref}")
    assert "không có quyền" in answer
    [incident] = await _incidents(sessions)
    assert incident.status == "new" and incident.acknowledged_at is None
    assert "viewed" not in await _events(sessions, incident.id)
    # The chief above the area may look.
    chief = Chat(fake_telegram, CHIEF_QH)
    replies = await chief.say(f"/case {incident.ref}")
    assert "cổng trường" in replies[0]


@pytest.mark.usefixtures("people")
async def test_acknowledge_question_anonymous_answer_close_keeps_the_reporter_hidden(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await file_report(teacher, anonymous=True, category="sexual_abuse")
    [incident] = await _incidents(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)

    seen = teacher.mark()
    [ack] = await officer.tap(f"case:ack:{incident.id}")
    assert incident.ref in ack
    [told] = await teacher.since(seen)
    assert "đã tiếp nhận" in told

    [prompt] = await officer.tap(f"case:ask:{incident.id}")
    assert "Nhập câu hỏi" in prompt
    seen = teacher.mark()
    [sent] = await officer.say("Các em học lớp mấy, việc này xảy ra mấy lần rồi?")
    assert "Đã chuyển câu hỏi" in sent
    [question] = await teacher.since(seen)
    assert "Các em học lớp mấy" in question
    await teacher.tap(teacher.button(f"case:reply:{incident.id}"))
    seen = officer.mark()
    [thanks] = await teacher.say("Lớp 7A, đã xảy ra ba lần trong tháng này.")
    assert "Đã chuyển câu trả lời" in thanks
    [relayed] = await officer.since(seen)
    assert "Người báo tin ẩn danh" in relayed and "Lớp 7A" in relayed

    [details] = (await officer.tap(f"case:view:{incident.id}"))
    assert "Người báo tin ẩn danh" in details

    await officer.tap(f"case:close:{incident.id}")
    seen = teacher.mark()
    [closed] = await officer.tap(f"case:close:{incident.id}:referred_social")
    assert "Đã kết thúc" in closed
    [outcome] = await teacher.since(seen)
    assert "bảo trợ xã hội" in outcome and incident.ref in outcome

    # Whatever the officer saw, the teacher's name, phone and chat id never appeared.
    for text in officer.received():
        assert "Nguyễn Thị Hoa" not in text and "0901234567" not in text
        assert "+84901234567" not in text and str(LIAISON_HX) not in text
    [incident] = await _incidents(sessions)
    assert incident.status == "closed" and incident.outcome == "referred_social"
    assert await _events(sessions, incident.id) == [
        "created", "routed", "alerted", "acknowledged", "question", "answer", "viewed", "closed"]


@pytest.mark.usefixtures("people")
async def test_named_report_shows_the_reporter_to_the_officer_only(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    await file_report(Chat(fake_telegram, LIAISON_HX), anonymous=False)
    [incident] = await _incidents(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    assert "Nguyễn Thị Hoa" not in officer.received()[0]  # not even in the alert
    [details] = await officer.tap(f"case:view:{incident.id}")
    assert "Nguyễn Thị Hoa" in details and "+84901234567" in details


@pytest.mark.usefixtures("people")
async def test_parent_reports_anonymously_by_default(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    parent = Chat(fake_telegram, PARENT_HX)
    received = await file_report(parent, anonymous=True, category="cyberbullying")
    asked = next(p for p in reversed(fake_telegram.sent(PARENT_HX)) if "danh tính" in p["text"])
    assert "Anh/chị" in asked["text"]
    assert fake_telegram.buttons(asked)[0][1] == "report:anon:yes"  # anonymity comes first
    [incident] = await _incidents(sessions)
    assert incident.ref in received
    assert incident.anonymous and incident.reporter_role == "parent"
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    [details] = await officer.tap(f"case:view:{incident.id}")
    assert "Người báo tin ẩn danh" in details and "Bí Mật" not in details


@pytest.mark.usefixtures("people")
async def test_restart_in_the_middle_of_a_report_continues_it(
        settings, clock, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    first = App(settings, clock)
    await first.start()
    await teacher.say("/report")
    await teacher.tap("report:danger:no")
    await teacher.tap("report:cat:family_violence")
    await first.stop()

    second = App(settings, clock)
    await second.start()
    try:
        [next_question] = await teacher.say("Em kể bố thường xuyên đánh em khi say rượu.")
        assert "khi nào" in next_question
        await teacher.tap("report:when:today")
        await teacher.tap("report:skip")
        await teacher.tap("report:skip")
        await teacher.tap("report:anon:yes")
        [received] = await teacher.tap("report:send")
        [incident] = await _incidents(sessions)
        assert incident.ref in received and incident.category == "family_violence"
        assert incident.description.startswith("Em kể bố")
    finally:
        await second.stop()


@pytest.mark.usefixtures("people")
async def test_unfinished_report_can_be_resumed_or_discarded_and_is_never_sent_alone(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    await teacher.tap("report:danger:no")
    await teacher.tap("report:cat:bullying")
    await teacher.say("/help")  # wandered off
    [offer] = await teacher.say("/report")
    assert "làm dở" in offer
    [question] = await teacher.tap("report:resume")
    assert "mô tả" in question
    await teacher.say("/report")
    [gone] = await teacher.tap("report:discard")
    assert "chưa được gửi" in gone
    assert await _incidents(sessions) == []


@pytest.mark.usefixtures("people")
async def test_unexpected_input_gets_a_clear_answer_and_the_flow_goes_on(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    await teacher.tap("report:danger:no")
    sticker = {"file_id": "stk", "file_unique_id": "stk", "type": "regular", "width": 1,
               "height": 1, "is_animated": False, "is_video": False}
    replies = await teacher.say(None, replies=2, sticker=sticker)
    assert "chưa đọc được" in replies[0] and "loại vụ việc" in replies[1]
    [again] = await teacher.say("không biết nữa")  # words that are no option: asked again
    assert "loại vụ việc" in again
    await teacher.say("3")  # a typed number picks the third option
    [too_long] = await teacher.say("x" * 3001)
    assert "3001" in too_long
    photo = [{"file_id": "AgACphoto1", "file_unique_id": "p1", "width": 800, "height": 600,
              "file_size": 120_000}]
    replies = await teacher.say("Ảnh chụp tin nhắn đe dọa trên mạng.", replies=2, photo=photo)
    assert "Đã nhận tệp" in replies[0] and "khi nào" in replies[1]
    await teacher.tap("report:when:today")
    await teacher.tap("report:skip")
    await teacher.tap("report:skip")
    await teacher.tap("report:anon:no")
    await teacher.tap("report:send")
    [incident] = await _incidents(sessions)
    assert incident.category == "cyberbullying"
    assert incident.description == "Ảnh chụp tin nhắn đe dọa trên mạng."
    assert [(a.kind, a.ref) for a in incident.attachments] == [("photo", "AgACphoto1")]
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:view:{incident.id}", replies=2)
    [photo_sent] = fake_telegram.sent(OFFICER_HX, method="sendPhoto")
    assert photo_sent["photo"] == "AgACphoto1"


@pytest.mark.usefixtures("people")
async def test_many_reports_are_slowed_down_but_urgent_ones_go_through(
        database_url, fake_telegram: FakeTelegram, sessions, clock) -> None:
    from tests.conftest import make_settings

    app = App(make_settings(database_url, fake_telegram, report_limit_per_hour=1), clock)
    await app.start()
    try:
        teacher = Chat(fake_telegram, LIAISON_HX)
        await file_report(teacher)
        await teacher.say("/report")
        await teacher.tap("report:danger:no")
        await teacher.tap("report:cat:other")
        await teacher.say("Lại một vụ nữa.")
        await teacher.tap("report:when:now")
        await teacher.tap("report:skip")
        await teacher.tap("report:skip")
        await teacher.tap("report:anon:no")
        slow = await teacher.tap("report:send", replies=2)
        assert "nhiều báo cáo" in slow[0]
        assert len(await _incidents(sessions)) == 1
        await teacher.tap("report:cancel")
        await teacher.say("/report")
        await teacher.tap("report:danger:yes", replies=3)
        assert [i.urgent for i in await _incidents(sessions)] == [False, True]
    finally:
        await app.stop()


@pytest.mark.usefixtures("people")
async def test_lists_reassign_and_reopen(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await file_report(teacher)
    [incident] = await _incidents(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    [listing] = await officer.say("/cases")
    assert incident.ref in listing and "mới" in listing

    [prompt] = await officer.tap(f"case:reassign:{incident.id}")
    assert "Trần Văn Bảo" in prompt or any("Trần Văn Bảo" in label
                                          for label, _ in officer.last_buttons())
    await officer.tap(f"case:reassign:{incident.id}:"
                      f"{officer.button(f'case:reassign:{incident.id}:').rsplit(':', 1)[1]}")
    backup = Chat(fake_telegram, BACKUP_HX)
    [alert] = await backup.wait(1)
    assert incident.ref in alert
    assert "được đồng chí Lê Văn An chuyển cho đồng chí xử lý" in alert  # handed over, by whom
    await backup.tap(f"case:ack:{incident.id}")
    await backup.tap(f"case:close:{incident.id}")
    await backup.tap(f"case:close:{incident.id}:unfounded")
    [reopen_prompt] = await backup.tap(f"case:reopen:{incident.id}")
    assert "lý do" in reopen_prompt
    await backup.say("Có thêm thông tin từ nhà trường.")
    assert incident.ref in await teacher.wait_text("đã được mở lại")
    [mine] = await teacher.say("/mycases")
    assert incident.ref in mine and "đang xác minh" in mine
    kinds = await _events(sessions, incident.id)
    assert kinds[-5:] == ["reassigned", "alerted", "acknowledged", "closed", "reopened"]


@pytest.mark.usefixtures("people")
async def test_case_with_no_officer_anywhere_goes_to_the_nearest_admin(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    from storage.models import Account, Area, Person, Role, RoleAssignment, School

    now = clock.now()
    async with sessions() as session, session.begin():
        th = (await session.execute(select(Area).where(Area.code == "TH"))).scalar_one()
        mx = Area(code="MX", name="Xã Mường Xanh", parent_id=th.id)
        session.add(mx)
        await session.flush()
        school = School(code="MN-MX", name="Trường Mầm non Mường Xanh", area_id=mx.id,
                        parent_code="MXPARENT")
        admin = Person(name="Ban Chỉ đạo tỉnh", created_at=now)
        teacher = Person(name="Lò Thị Mai", phone="+84977000111", created_at=now)
        session.add_all([school, admin, teacher])
        await session.flush()
        session.add_all([
            RoleAssignment(person_id=admin.id, role=Role.ADMIN, area_id=th.id, created_at=now),
            RoleAssignment(person_id=teacher.id, role=Role.LIAISON, school_id=school.id,
                           created_at=now),
            Account(channel="telegram", external_id="931", person_id=admin.id, created_at=now,
                    code_failures=0),
            Account(channel="telegram", external_id="932", person_id=teacher.id,
                    created_at=now, code_failures=0)])
    await file_report(Chat(fake_telegram, 932), category="child_labour")
    [incident] = await _incidents(sessions)
    [alert] = await Chat(fake_telegram, 931).wait(1)
    assert incident.ref in alert and "Trường Mầm non Mường Xanh" in alert
    assert incident.assigned_person_id is not None


@pytest.mark.usefixtures("people")
async def test_only_liaisons_and_parents_can_report(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    [refused] = await Chat(fake_telegram, OFFICER_HX).say("/report")
    assert "Chỉ cán bộ đầu mối" in refused and "113" in refused
    [refused] = await Chat(fake_telegram, 999).say("/report")  # a stranger
    assert "Chỉ cán bộ đầu mối" in refused
    assert await _incidents(sessions) == []


@pytest.mark.usefixtures("people")
async def test_edited_message_is_explained_and_the_question_repeated(
        app: App, fake_telegram: FakeTelegram) -> None:
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    seen = teacher.mark()
    fake_telegram.edit(LIAISON_HX, "/report")
    replies = await teacher.since(seen, 2)
    assert "tin nhắn đã sửa" in replies[0] and "nguy hiểm" in replies[1]


@pytest.mark.usefixtures("people")
async def test_a_parent_may_choose_to_be_named_and_leave_a_phone_for_the_officer(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    """Parents join with the school's code and leave no name: one who chooses to be named
    types a name and phone, which the officer reads on the case (and nobody else's case)."""
    parent = Chat(fake_telegram, PARENT_HX)
    await parent.say("/report")
    await parent.tap("report:danger:no")
    await parent.tap("report:cat:bullying")
    await parent.say("Con tôi bị nhóm bạn cùng lớp chặn đường đòi tiền.")
    await parent.tap("report:when:today")
    await parent.tap("report:skip")
    await parent.say("1 em")
    [contact] = await parent.tap("report:anon:no")
    assert "họ tên và số điện thoại" in contact
    [again] = await parent.say("Nguyễn Thị Hoa")  # no phone: asked again, not lost
    assert "Chưa đọc được" in again
    assert [data for _, data in parent.last_buttons()] == ["report:anon:yes"]
    [summary] = await parent.say("Nguyễn Thị Hoa, 0912.345.678")
    assert "Nguyễn Thị Hoa, +84912345678" in summary
    received = await parent.tap("report:send")
    [incident] = await _incidents(sessions)
    assert incident.ref in received[0]
    assert not incident.anonymous and incident.reporter_name == "Nguyễn Thị Hoa"
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    [details] = await officer.tap(f"case:view:{incident.id}")
    assert "Nguyễn Thị Hoa" in details and "+84912345678" in details


def test_a_name_and_phone_are_read_however_they_are_typed() -> None:
    assert read_contact("Nguyễn Thị Hoa 0912 345 678") == ("Nguyễn Thị Hoa", "+84912345678")
    assert read_contact("0912-345-678 - Trần Văn Bình") == ("Trần Văn Bình", "+84912345678")
    assert read_contact("+84 912 345 678, Lò Thị Mai.") == ("Lò Thị Mai", "+84912345678")
    assert read_contact("Nguyễn Thị Hoa") is None
    assert read_contact("0912345678") is None
    assert read_contact("Hoa 0123") is None


@pytest.mark.usefixtures("people")
async def test_reporter_answer_with_a_voice_note_reaches_the_officer(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    parent = Chat(fake_telegram, PARENT_HX)
    await file_report(parent, anonymous=True)
    [incident] = await _incidents(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:ask:{incident.id}")
    seen = parent.mark()
    await officer.say("Bạn có ghi âm lời đe dọa không?")
    await parent.since(seen)
    await parent.tap(f"case:reply:{incident.id}")
    voice = {"file_id": "AwACvoice9", "file_unique_id": "v9", "duration": 12,
             "mime_type": "audio/ogg", "file_size": 40_000}
    [ok] = await parent.say(None, voice=voice)
    assert "Đã chuyển tệp" in ok
    await fake_telegram.wait_for(lambda: bool(fake_telegram.sent(OFFICER_HX, "sendVoice")))
    [sent] = fake_telegram.sent(OFFICER_HX, "sendVoice")
    assert sent["voice"] == "AwACvoice9" and "ẩn danh" in sent["caption"]
    [incident] = await _incidents(sessions)
    assert [(a.kind, a.source) for a in incident.attachments] == [("voice", "reporter")]


@pytest.mark.usefixtures("people")
async def test_help_shows_each_person_what_their_role_can_do_and_the_hotlines(
        app: App, fake_telegram: FakeTelegram) -> None:
    [parent] = await Chat(fake_telegram, PARENT_HX).say("/help")
    assert "/report" in parent and "/topics" in parent
    assert "/offduty" not in parent and "/campaign" not in parent and "/cases" not in parent
    assert "113" in parent and "111" in parent and len(parent) <= 520
    assert "until" not in parent  # no English inside the Vietnamese
    [officer] = await Chat(fake_telegram, OFFICER_HX).say("/help")
    assert "/cases" in officer and "/offduty đến" in officer and "/web" in officer
    assert "/report" not in officer and "/campaign" not in officer and "/stats" not in officer
    assert "113" in officer
    [chief] = await Chat(fake_telegram, CHIEF_QH).say("/help")
    assert "/stats" in chief
    [stranger] = await Chat(fake_telegram, 777).say("/help")
    assert "mã mời" in stranger and "113" in stranger and "/offduty" not in stranger


@pytest.mark.usefixtures("people")
async def test_a_liaison_of_two_schools_alerts_first_and_names_the_school_after(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    from storage.models import Account, Role, RoleAssignment, School

    async with sessions() as session, session.begin():  # Cô Hoa also teaches at Phú Lệ
        hoa = (await session.execute(select(Account).where(
            Account.external_id == str(LIAISON_HX)))).scalar_one()
        pl = (await session.execute(select(School).where(School.code == "TH-PL"))).scalar_one()
        session.add(RoleAssignment(person_id=hoa.person_id, role=Role.LIAISON, school_id=pl.id,
                                   created_at=clock.now()))
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    call, sent, which = await teacher.tap("report:danger:yes", replies=3)
    assert "113" in call and "các trường" in sent and "trường nào" in which.lower()
    [incident] = await _incidents(sessions)
    # Before the teacher has said which school, both schools' police already know.
    for chat_id in (OFFICER_HX, CHIEF_QH):  # HX's officer; Phú Lệ has none: the QH chief
        [alert] = await Chat(fake_telegram, chat_id).wait(1)
        assert "KHẨN CẤP" in alert and incident.ref in alert
        assert "Trường THCS Hồi Xuân" in alert and "Trường Tiểu học Phú Lệ" in alert
    hx_mark, qh_mark = Chat(fake_telegram, OFFICER_HX).mark(), Chat(fake_telegram, CHIEF_QH).mark()
    placed, category = await teacher.tap(f"report:school:{pl.id}", replies=2)
    assert "Trường Tiểu học Phú Lệ" in placed and "loại vụ việc" in category
    [incident] = await _incidents(sessions)
    assert incident.school_id == pl.id and incident.urgent
    for chat_id, mark in ((OFFICER_HX, hx_mark), (CHIEF_QH, qh_mark)):
        [told] = await Chat(fake_telegram, chat_id).since(mark)
        assert incident.ref in told and "Trường Tiểu học Phú Lệ" in told
    async with sessions() as session:
        chief = (await session.execute(select(Account.person_id).where(
            Account.external_id == str(CHIEF_QH)))).scalar_one()
    assert incident.assigned_person_id == chief  # Phú Lệ's chain: the QH chief
