"""Joining the network through the real python-telegram-bot Application and the fake API."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import pytest

from bot.app import App
from bot.core.clock import FakeClock
from storage.models import Outbox, Redemption, Role, RoleAssignment
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.helpers import account, count, invite, parent_code

pytestmark = pytest.mark.usefixtures("directory")


async def test_officer_registers_through_personal_deep_link(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    code = await invite(sessions, clock, "officer", area_code="HX", person_phone="0912345678")
    fake_telegram.user_message(601, f"/start {code}", first_name="An")
    [text] = await fake_telegram.wait_texts(601, 1)
    assert "Đăng ký thành công" in text and "Xã Hồi Xuân" in text
    acc = await account(sessions, 601)
    assert acc is not None and acc.person is not None
    assert acc.person.phone == "+84912345678" and acc.person.name == "Lê Văn An"
    officer_roles = [r for r in acc.person.roles if r.role == Role.OFFICER]
    assert [(r.area.code, r.duty) for r in officer_roles] == [("HX", "primary")]
    assert await count(sessions, Redemption) == 1
    assert fake_telegram.buttons(fake_telegram.sent(601)[0])  # the main menu came along


async def test_liaison_types_code_and_name_and_is_registered_for_the_school(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    code = await invite(sessions, clock, "liaison", school_code="THCS-HX")
    typed = f"{code[:5].lower()}-{code[5:]}"  # people retype codes loosely
    fake_telegram.user_message(602, typed)
    texts = await fake_telegram.wait_texts(602, 1)
    assert "họ và tên" in texts[0]
    decomposed = unicodedata.normalize("NFD", "Vũ Thị Tuyết")
    fake_telegram.user_message(602, decomposed)
    texts = await fake_telegram.wait_texts(602, 2)
    assert "Trường THCS Hồi Xuân" in texts[1]
    acc = await account(sessions, 602)
    assert acc.person.name == "Vũ Thị Tuyết"  # stored NFC
    assert [(r.role, r.school.code) for r in acc.person.roles] == [("liaison", "THCS-HX")]


async def test_parent_joins_with_the_school_public_code(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    code = await parent_code(sessions, "TH-PL")
    fake_telegram.user_message(603, f"/start {code}")
    [text] = await fake_telegram.wait_texts(603, 1)
    assert "phụ huynh" in text and "Trường Tiểu học Phú Lệ" in text
    # What is kept, and how to leave, said once on joining (Decree 13/2023).
    assert "Chúng tôi chỉ lưu" in text and "/stop" in text and "/forget" in text
    acc = await account(sessions, 603)
    assert [(r.role, r.school.code) for r in acc.person.roles] == [("parent", "TH-PL")]
    assert acc.person.name is None  # nothing about parents is asked or kept
    # Joining twice does not give the role twice.
    fake_telegram.user_message(603, code)
    texts = await fake_telegram.wait_texts(603, 2)
    assert "đã là phụ huynh" in texts[1]
    assert await count(sessions, RoleAssignment, RoleAssignment.role == "parent") == 1


async def test_wrong_expired_and_reused_codes_are_refused_clearly(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    fake_telegram.user_message(604, "ZZZZ-ZZZZ-ZZ")
    texts = await fake_telegram.wait_texts(604, 1)
    assert "không đúng" in texts[0]

    short = await invite(sessions, clock, "officer", area_code="PL", expires=timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    fake_telegram.user_message(604, short)
    texts = await fake_telegram.wait_texts(604, 2)
    assert "hết hạn" in texts[1]

    once = await invite(sessions, clock, "officer", area_code="PL", person_phone="0987654321")
    fake_telegram.user_message(605, f"/start {once}")
    await fake_telegram.wait_texts(605, 1)
    fake_telegram.user_message(604, once)
    texts = await fake_telegram.wait_texts(604, 3)
    assert "đã được sử dụng" in texts[2]
    acc = await account(sessions, 604)
    assert acc.person is None  # none of the refused codes gave this account anything


async def test_repeated_wrong_codes_lock_the_account_for_a_while(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    good = await invite(sessions, clock, "officer", area_code="HX", person_phone="0912000111")
    for n in range(5):
        fake_telegram.user_message(606, f"ZZZZZ-ZZZZ{n + 2}")  # shaped like a code: it counts
    texts = await fake_telegram.wait_texts(606, 5)
    assert "quá nhiều lần" in texts[4]
    fake_telegram.user_message(606, good)  # even a right code waits out the lock
    texts = await fake_telegram.wait_texts(606, 6)
    assert "quá nhiều lần" in texts[5]
    assert (await account(sessions, 606)).person is None
    clock.advance(timedelta(minutes=16))
    fake_telegram.user_message(606, good)
    texts = await fake_telegram.wait_texts(606, 7)
    assert "Đăng ký thành công" in texts[6]


async def test_greetings_from_a_stranger_are_welcomed_not_counted_as_wrong_codes(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    good = await invite(sessions, clock, "officer", area_code="HX", person_phone="0912000111")
    greetings = ["hello there", "xin chào bạn", "Chào anh", "alo alo", "cho hỏi",
                 "hello there", "1234567890"]
    for n, text in enumerate(greetings, start=1):
        fake_telegram.user_message(608, text)
        texts = await fake_telegram.wait_texts(608, n)
        assert "không đúng" not in texts[-1] and "quá nhiều lần" not in texts[-1], text
        assert "mã mời" in texts[-1].lower(), texts[-1]  # the welcome says how to join
    assert (await account(sessions, 608)).code_failures == 0
    fake_telegram.user_message(608, good.lower())  # seven greetings later, a code still works
    texts = await fake_telegram.wait_texts(608, len(greetings) + 1)
    assert "Đăng ký thành công" in texts[-1]


async def test_language_switch_by_button_and_by_typed_number(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    fake_telegram.user_message(607, "/language")
    await fake_telegram.wait_texts(607, 1)
    labels = [label for label, _ in fake_telegram.buttons(fake_telegram.sent(607)[0])]
    assert labels == ["1. Tiếng Việt", "2. English"]
    fake_telegram.press(607, "lang:en")
    texts = await fake_telegram.wait_texts(607, 2)
    assert texts[1] == "Switched to English."
    fake_telegram.user_message(607, "/help")
    texts = await fake_telegram.wait_texts(607, 3)
    assert "Emergency:" in texts[2] and "111" in texts[2] and "113" in texts[2]
    fake_telegram.user_message(607, "/language")
    await fake_telegram.wait_texts(607, 4)
    fake_telegram.user_message(607, "1")
    texts = await fake_telegram.wait_texts(607, 5)
    assert texts[4] == "Đã chuyển sang tiếng Việt."


async def test_me_tells_a_registered_officer_who_they_are(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    code = await invite(sessions, clock, "officer", area_code="QH", person_phone="0987654321",
                        duty="chief")
    fake_telegram.user_message(608, f"/start {code}")
    await fake_telegram.wait_texts(608, 1)
    fake_telegram.user_message(608, "/me")
    texts = await fake_telegram.wait_texts(608, 2)
    assert "Phạm Thị Bình" in texts[1] and "chỉ huy" in texts[1] and "Huyện Quan Hóa" in texts[1]
    fake_telegram.user_message(609, "/me")
    texts = await fake_telegram.wait_texts(609, 1)
    assert "chưa đăng ký" in texts[0]


async def test_restart_in_the_middle_of_registration_continues_the_flow(
        settings, clock: FakeClock, fake_telegram: FakeTelegram, sessions) -> None:
    first = App(settings, clock)
    await first.start()
    code = await invite(sessions, clock, "liaison", school_code="TH-PL")
    fake_telegram.user_message(610, code)
    await fake_telegram.wait_texts(610, 1)
    await first.stop()

    second = App(settings, clock)
    await second.start()
    try:
        fake_telegram.user_message(610, "Hoàng Văn Em")
        texts = await fake_telegram.wait_texts(610, 2)
        assert "Trường Tiểu học Phú Lệ" in texts[1]
    finally:
        await second.stop()
    acc = await account(sessions, 610)
    assert acc.person.name == "Hoàng Văn Em"


async def test_an_edited_start_is_a_start_and_a_strangers_photo_gets_the_welcome(
        app: App, fake_telegram: FakeTelegram, sessions) -> None:
    code = await parent_code(sessions, "TH-PL")
    photo = [{"file_id": "AgACx", "file_unique_id": "x", "width": 1, "height": 1}]
    fake_telegram.user_message(609, None, photo=photo)
    [welcome] = await fake_telegram.wait_texts(609, 1)
    assert "mã mời" in welcome.lower() and "chưa đọc được" not in welcome
    fake_telegram.edit(609, "xin chào")  # an edited greeting: still a greeting
    texts = await fake_telegram.wait_texts(609, 2)
    assert "mã mời" in texts[1].lower() and "tin nhắn đã sửa" not in texts[1]
    fake_telegram.edit(609, f"/start {code}")
    texts = await fake_telegram.wait_texts(609, 3)
    assert "phụ huynh" in texts[2] and "Trường Tiểu học Phú Lệ" in texts[2]


async def test_each_person_sees_their_own_roles_commands_in_telegrams_menu(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    """Telegram's "/" menu lists what a person can do: a stranger how to join, a parent never
    /offduty or /campaign, an officer /offduty and /onduty; in the person's language."""
    await fake_telegram.wait_for(lambda: ("default", "en") in fake_telegram.menus)
    assert [c for c, _ in fake_telegram.menus[("default", "")]] == ["start", "help", "language"]
    assert fake_telegram.menus[("default", "")][0][1].startswith("Bắt đầu")
    assert fake_telegram.menus[("default", "en")][0][1].startswith("Start")

    code = await parent_code(sessions, "TH-PL")
    fake_telegram.user_message(611, f"/start {code}")
    await fake_telegram.wait_for(lambda: ("611", "") in fake_telegram.menus)
    parent = dict(fake_telegram.menus[("611", "")])
    assert {"report", "mycases", "topics", "help"} <= set(parent)
    assert not {"offduty", "campaign", "cases", "stats"} & set(parent)
    assert parent["report"] == "Báo tin vụ việc"

    code = await invite(sessions, clock, "officer", area_code="HX", person_phone="0912345678")
    fake_telegram.user_message(612, f"/start {code}")
    await fake_telegram.wait_for(lambda: ("612", "") in fake_telegram.menus)
    officer = [c for c, _ in fake_telegram.menus[("612", "")]]
    assert officer.index("onduty") == officer.index("offduty") + 1
    assert "cases" in officer and "report" not in officer

    fake_telegram.menus.pop(("612", ""))
    fake_telegram.press(612, "lang:en")
    await fake_telegram.wait_for(lambda: ("612", "") in fake_telegram.menus)
    assert dict(fake_telegram.menus[("612", "")])["cases"] == "Cases to handle"
    # The same menu is not set again on every message (it would be queued with the reply).
    menus = Outbox.idempotency_key.like("commands:%")
    queued = await count(sessions, Outbox, menus)
    fake_telegram.user_message(612, "/help")
    await fake_telegram.wait_texts(612, 3)
    assert await count(sessions, Outbox, menus) == queued
