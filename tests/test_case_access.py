"""Who may see and do what with a case: each rule of the case service, and its access log.

Each test names the rule it guards; removing that rule from bot/services/cases.py makes the
test fail (that is how each was checked). The service is driven directly, in one database
session per step, the way handlers, the scheduler and the console use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.services.cases import Actor, CaseService, Draft, NoSuchCase, Refused
from bot.services.directory import normalise_phone
from storage.models import CaseAccess, Incident, Person, Role, RoleAssignment, School
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.people import (
    ADMIN_PHONE,
    CHIEF_QH,
    LIAISON_HX,
    LIAISON_PL,
    OFFICER_BT,
    OFFICER_HX,
    PARENT_HX,
    PHONES,
    Chat,
    add_province_admin,
    link_everyone,
)

pytestmark = pytest.mark.usefixtures("directory")


@pytest.fixture
async def people(directory, sessions, clock) -> None:
    """Everyone of the test directory, a parent of THCS-HX, and an admin of the province."""
    await link_everyone(sessions, clock)
    await add_province_admin(sessions, clock)


async def _person(session, chat_or_phone: int | str) -> Person:
    if isinstance(chat_or_phone, int):
        if chat_or_phone == PARENT_HX:
            return (await session.execute(select(Person).join(RoleAssignment).where(
                RoleAssignment.role == Role.PARENT))).scalars().first()
        chat_or_phone = PHONES[chat_or_phone]
    return (await session.execute(select(Person).where(
        Person.phone == normalise_phone(chat_or_phone)))).scalar_one()


@pytest.fixture
def as_(sessions, clock, settings) -> Callable[..., Awaitable[Any]]:
    """Run one call of the case service as a person, in its own transaction."""
    async def run(who: int | str, call: Callable[[CaseService, Actor], Awaitable[Any]]) -> Any:
        async with sessions() as session, session.begin():
            person = await _person(session, who)
            service = CaseService(session, now=clock.now(), tz=settings.tz,
                                  default_language="vi")
            return await call(service, Actor(person, "telegram"))
    return run


async def _report(as_, *, anonymous: bool = False, school: str = "THCS-HX",
                  who: int = LIAISON_HX) -> int:
    async def create(service: CaseService, actor: Actor) -> int:
        found = (await service.session.execute(
            select(School).where(School.code == school))).scalar_one()
        incident = await service.create(actor, found, Role.LIAISON, Draft(
            category="bullying", description="Một nhóm học sinh đánh một bạn ở cổng trường.",
            anonymous=anonymous), urgent=False)
        return incident.id
    return await as_(who, create)


async def _access(sessions, case_id: int) -> list[tuple[str, int | None]]:
    async with sessions() as session:
        rows = (await session.execute(select(CaseAccess).where(
            CaseAccess.incident_id == case_id).order_by(CaseAccess.id))).scalars()
        return [(r.action, r.person_id) for r in rows]


async def _id_of(sessions, who: int | str) -> int:
    async with sessions() as session:
        return (await _person(session, who)).id


@pytest.mark.usefixtures("people")
async def test_an_officer_of_another_district_can_neither_see_nor_list_nor_act(as_) -> None:
    """Rule: the area chain. Bá Thước's officer has no business with a Hồi Xuân case."""
    case_id = await _report(as_)
    for call in (lambda s, a: s.show(a, case_id), lambda s, a: s.acknowledge(a, case_id),
                 lambda s, a: s.note(a, case_id, "ghi chú"),
                 lambda s, a: s.close(a, case_id, "resolved"),
                 lambda s, a: s.reassign_candidates(a, case_id)):
        with pytest.raises(Refused):
            await as_(OFFICER_BT, call)
    listed = await as_(OFFICER_BT, lambda s, a: s.list_open(a))
    assert case_id not in [i.id for i in listed]
    # …while the area's own officer lists it (so the list is not simply empty).
    assert case_id in [i.id for i in await as_(OFFICER_HX, lambda s, a: s.list_open(a))]


@pytest.mark.usefixtures("people")
async def test_the_chief_of_the_district_above_may_work_the_case(as_) -> None:
    """Rule: officers of any area above the case's area (escalation reaches them)."""
    case_id = await _report(as_)
    view = await as_(CHIEF_QH, lambda s, a: s.show(a, case_id))
    assert view.incident.id == case_id
    assert case_id in [i.id for i in await as_(CHIEF_QH, lambda s, a: s.list_open(a))]


@pytest.mark.usefixtures("people")
async def test_an_admin_of_the_province_may_list_and_open_the_case(as_) -> None:
    """Rule: admins of the case's area chain, including /cases (it used to refuse them)."""
    case_id = await _report(as_)
    assert case_id in [i.id for i in await as_(ADMIN_PHONE, lambda s, a: s.list_open(a))]
    view = await as_(ADMIN_PHONE, lambda s, a: s.show(a, case_id))
    assert view.incident.id == case_id


@pytest.mark.usefixtures("people")
async def test_the_officer_a_case_is_assigned_to_may_work_it_from_anywhere(
        as_, sessions) -> None:
    """Rule: the assignee, even outside the area chain (a case handed on by hand)."""
    case_id = await _report(as_)
    outsider = await _id_of(sessions, OFFICER_BT)
    async with sessions() as session, session.begin():
        incident = await session.get(Incident, case_id)
        incident.assigned_person_id = outsider
    _incident, taken = await as_(OFFICER_BT, lambda s, a: s.acknowledge(a, case_id))
    assert taken


@pytest.mark.usefixtures("people")
async def test_only_the_reporter_may_answer_the_officer(as_) -> None:
    """Rule: the reporter's own case. Another parent of the same school cannot answer, nor
    read, a teacher's case, even with a forged Reply button."""
    case_id = await _report(as_)
    with pytest.raises(Refused):
        await as_(PARENT_HX, lambda s, a: s.may_answer(a, case_id))
    with pytest.raises(Refused):
        await as_(PARENT_HX, lambda s, a: s.answer(a, case_id, "trả lời", [], key="x"))
    assert (await as_(LIAISON_HX, lambda s, a: s.may_answer(a, case_id))).id == case_id
    mine = await as_(PARENT_HX, lambda s, a: s.reported_by(a))
    assert mine == []


@pytest.mark.usefixtures("people")
async def test_a_duplicate_must_be_a_case_the_officer_may_see(as_) -> None:
    """Rule: closing as a duplicate names a case in the officer's reach (no probing refs)."""
    case_id = await _report(as_)
    foreign = await _report(as_, school="TH-PL", who=902)  # Phú Lệ: under QH, not HX
    ref = (await as_(CHIEF_QH, lambda s, a: s.show(a, foreign))).incident.ref
    with pytest.raises(NoSuchCase):
        await as_(OFFICER_HX, lambda s, a: s.close(a, case_id, "duplicate", duplicate_ref=ref))
    closed = await as_(CHIEF_QH, lambda s, a: s.close(a, case_id, "duplicate",
                                                       duplicate_ref=ref))
    assert closed.status == "closed" and closed.duplicate_of_id == foreign


@pytest.mark.usefixtures("people")
async def test_a_case_goes_only_to_an_officer_of_its_chain(as_, sessions) -> None:
    """Rule: reassignment targets are officers of the case's area chain."""
    case_id = await _report(as_)
    outsider = await _id_of(sessions, OFFICER_BT)
    assert await as_(OFFICER_HX, lambda s, a: s.reassign(a, case_id, outsider)) is None
    chief = await _id_of(sessions, CHIEF_QH)
    moved = await as_(OFFICER_HX, lambda s, a: s.reassign(a, case_id, chief))
    assert moved is not None and moved.assigned_person_id == chief


@pytest.mark.usefixtures("people")
async def test_nobody_reports_for_a_school_that_is_not_theirs(as_) -> None:
    """Rule: a report is filed for a school where the reporter is liaison or parent."""
    with pytest.raises(Refused):
        await _report(as_, school="TH-PL", who=LIAISON_HX)


@pytest.mark.usefixtures("people")
async def test_an_anonymous_reporter_stays_anonymous_to_the_officer(as_) -> None:
    """Rule: the reporter is shown only when the report is not anonymous."""
    named = await _report(as_, anonymous=False)
    hidden = await _report(as_, anonymous=True)
    assert (await as_(OFFICER_HX, lambda s, a: s.show(a, named))).reporter.name == \
        "Nguyễn Thị Hoa"
    assert (await as_(OFFICER_HX, lambda s, a: s.show(a, hidden))).reporter is None


@pytest.mark.usefixtures("people")
async def test_every_listing_view_alert_and_change_is_in_the_access_log(
        as_, sessions) -> None:
    case_id = await _report(as_)
    liaison, officer = await _id_of(sessions, LIAISON_HX), await _id_of(sessions, OFFICER_HX)
    assert await _access(sessions, case_id) == [("created", liaison), ("alerted", officer)]
    await as_(OFFICER_HX, lambda s, a: s.list_open(a))
    await as_(OFFICER_HX, lambda s, a: s.show(a, case_id))
    await as_(OFFICER_HX, lambda s, a: s.acknowledge(a, case_id))
    await as_(OFFICER_HX, lambda s, a: s.note(a, case_id, "Đã gọi cho nhà trường."))
    await as_(LIAISON_HX, lambda s, a: s.reported_by(a))
    assert (await _access(sessions, case_id))[2:] == [
        ("listed", officer), ("viewed", officer), ("acknowledged", officer),
        ("note", officer), ("listed", liaison)]
    with pytest.raises(Refused):
        await as_(OFFICER_BT, lambda s, a: s.show(a, case_id))
    assert len(await _access(sessions, case_id)) == 7  # a refused look changes nothing


@pytest.mark.usefixtures("people")
async def test_a_forged_reply_button_is_refused_in_the_chat(
        app: App, fake_telegram: FakeTelegram, sessions, as_) -> None:
    """The same rule seen from the chat: a parent pressing a Reply button for a teacher's
    case is told they may not, and nothing reaches the officer."""
    case_id = await _report(as_)
    parent = Chat(fake_telegram, PARENT_HX)
    [answer] = await parent.tap(f"case:reply:{case_id}")
    assert "không có quyền" in answer
    [answer] = await parent.say("Tôi biết chuyện này")
    assert "Kiểm tra lại" not in answer  # no relay flow was started: the menu answers
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)  # the alert
    assert not any("Tôi biết chuyện này" in t for t in officer.received())


@pytest.mark.usefixtures("people")
async def test_a_typed_answer_with_two_questions_waiting_asks_which_case(
        app: App, fake_telegram: FakeTelegram, as_) -> None:
    first, second = await _report(as_), await _report(as_)
    for case_id in (first, second):
        await as_(OFFICER_HX, lambda s, a, c=case_id: s.ask(a, c, "Em nào bị đánh?"))
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.wait(2)  # both questions arrived
    [which] = await teacher.say("Em lớp 6A.")
    assert "vụ việc nào" in which
    assert [data for _label, data in teacher.last_buttons()] == [
        f"case:reply:{first}", f"case:reply:{second}"]
    assert await as_(LIAISON_HX, lambda s, a: s.awaiting_answer(a)) != []  # nothing sent yet


@pytest.mark.usefixtures("people")
async def test_only_the_reporter_places_a_case_and_only_at_a_school_of_theirs(as_) -> None:
    """Rule: CaseService.place moves a case only for its reporter, to one of their schools."""
    case_id = await _report(as_)

    def place(code: str) -> Callable[[CaseService, Actor], Awaitable[Any]]:
        async def run(service: CaseService, actor: Actor) -> Any:
            found = (await service.session.execute(
                select(School).where(School.code == code))).scalar_one()
            return await service.place(actor, case_id, found, Role.LIAISON)
        return run

    with pytest.raises(Refused):  # another school's liaison
        await as_(LIAISON_PL, place("TH-PL"))
    with pytest.raises(Refused):  # the reporter, but Phú Lệ is not one of her schools
        await as_(LIAISON_HX, place("TH-PL"))
    placed = await as_(LIAISON_HX, place("THCS-HX"))
    assert placed.school.code == "THCS-HX"
