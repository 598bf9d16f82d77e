"""Nobody ignored: escalation steps, reminders, off duty, inherited policies, downtime."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import App
from bot.cli import main
from bot.core.clock import FakeClock
from storage.models import Account, Incident, IncidentEvent, Outbox
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.people import (
    BACKUP_HX,
    CHIEF_QH,
    LIAISON_HX,
    OFFICER_HX,
    Chat,
    link_everyone,
)
from tests.test_reports import file_report

pytestmark = pytest.mark.usefixtures("directory")

URGENT_POLICY = """
[urgent]
steps = [
  {after = "0m", notify = "primary"},
  {after = "5m", notify = "backup"},
  {after = "10m", notify = "chief"},
]
repeat_last = 1
repeat_every = "10m"
"""


@pytest.fixture
async def people(directory, sessions, clock) -> None:
    await link_everyone(sessions, clock)


async def queued(sessions, chat_id: int) -> list[str]:
    """Texts queued for a Telegram chat, in order (deterministic right after a tick)."""
    async with sessions() as session:
        rows = (await session.execute(
            select(Outbox.payload).join(Account, Account.id == Outbox.account_id)
            .where(Account.external_id == str(chat_id)).order_by(Outbox.id))).scalars()
        return [p["text"] for p in rows if p.get("commands") is None]  # menus are no message


async def escalations(sessions, chat_id: int) -> list[str]:
    return [t for t in await queued(sessions, chat_id) if "CHƯA AI TIẾP NHẬN" in t]


async def the_incident(sessions) -> Incident:
    async with sessions() as session:
        return (await session.execute(select(Incident))).scalar_one()


async def cli(*args: str) -> int:
    """Run the command line as an operator would, beside the running app."""
    return await asyncio.to_thread(main, list(args))


async def set_policy(database_url: str, area: str, text: str, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch, suffix: str = ".toml") -> int:
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)
    path = tmp_path / f"policy{suffix}"
    path.write_text(text, encoding="utf-8")
    return await cli("escalation", "set", area, str(path), "--lang", "en")


@pytest.mark.usefixtures("people")
async def test_normal_case_escalates_to_backup_then_chief_until_acknowledged(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    assert incident.next_escalation_at == incident.created_at + timedelta(minutes=60)
    clock.advance(timedelta(minutes=59))
    assert (await app.tick())["escalated"] == 0
    assert await escalations(sessions, BACKUP_HX) == []
    clock.advance(timedelta(minutes=1))
    assert (await app.tick())["escalated"] == 1
    [to_backup] = await escalations(sessions, BACKUP_HX)
    assert incident.ref in to_backup
    reported = incident.created_at.astimezone(app.settings.tz).strftime("%H:%M %d/%m/%Y")
    assert to_backup.count(reported) == 1  # the time it was reported, said once
    assert await escalations(sessions, CHIEF_QH) == []
    # The backup acknowledges: the chief is never bothered.
    backup = Chat(fake_telegram, BACKUP_HX)
    await backup.wait_text(incident.ref)
    await backup.tap(f"case:ack:{incident.id}")
    clock.advance(timedelta(hours=4))
    await app.tick()
    assert await escalations(sessions, CHIEF_QH) == []
    assert (await the_incident(sessions)).next_escalation_at is None


@pytest.mark.usefixtures("people")
async def test_each_urgent_step_fires_at_its_time(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock, database_url,
        tmp_path, monkeypatch) -> None:
    assert await set_policy(database_url, "HX", URGENT_POLICY, tmp_path, monkeypatch) == 0
    teacher = Chat(fake_telegram, LIAISON_HX)
    await teacher.say("/report")
    await teacher.tap("report:danger:yes", replies=3)
    incident = await the_incident(sessions)
    assert len(await queued(sessions, OFFICER_HX)) == 1  # primary only, by this policy
    assert await queued(sessions, BACKUP_HX) == []
    timeline = [(4, BACKUP_HX, 0), (5, BACKUP_HX, 1), (9, CHIEF_QH, 0), (10, CHIEF_QH, 1),
                (19, CHIEF_QH, 1), (20, CHIEF_QH, 2), (40, CHIEF_QH, 2)]
    start = clock.now()
    for minute, chat_id, expected in timeline:
        clock.advance(start + timedelta(minutes=minute) - clock.now())
        await app.tick()
        assert len(await escalations(sessions, chat_id)) == expected, (minute, chat_id)
    assert (await the_incident(sessions)).next_escalation_at is None  # repeats used up
    async with sessions() as session:
        steps = (await session.execute(select(IncidentEvent.data).where(
            IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "escalated"))
        ).scalars().all()
    assert [s["step"] for s in steps] == [1, 2, 3]


@pytest.mark.usefixtures("people")
async def test_acknowledged_case_without_progress_is_reminded_then_escalated_again(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:ack:{incident.id}")
    clock.advance(timedelta(hours=23))
    assert (await app.tick())["stalled"] == 0
    clock.advance(timedelta(hours=1))
    assert (await app.tick())["stalled"] == 1
    assert "chưa có cập nhật" in (await queued(sessions, OFFICER_HX))[-1]
    assert (await the_incident(sessions)).status == "acknowledged"
    clock.advance(timedelta(hours=24))
    await app.tick()
    incident = await the_incident(sessions)
    assert incident.status == "new" and incident.acknowledged_at is None
    assert "chuyển lại" in (await queued(sessions, OFFICER_HX))[-1]
    await app.tick()  # the renewed escalation fires at once: the backup is alerted
    [to_backup] = await escalations(sessions, BACKUP_HX)
    assert incident.ref in to_backup


@pytest.mark.usefixtures("people")
async def test_a_note_counts_as_progress_and_resets_the_reminder(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:ack:{incident.id}")
    clock.advance(timedelta(hours=20))
    await officer.tap(f"case:note:{incident.id}")
    await officer.say("Đã làm việc với gia đình hai em.")
    clock.advance(timedelta(hours=20))
    assert (await app.tick())["stalled"] == 0


@pytest.mark.usefixtures("people")
async def test_off_duty_officers_are_skipped_by_routing(
        app: App, fake_telegram: FakeTelegram, sessions, clock) -> None:
    officer = Chat(fake_telegram, OFFICER_HX)
    [off] = await officer.say("/offduty until 30/09/2026")
    assert "tạm nghỉ đến" in off
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    assert incident.assigned_person_id is not None
    [alert] = await Chat(fake_telegram, BACKUP_HX).wait(1)
    assert incident.ref in alert
    assert len(await queued(sessions, OFFICER_HX)) == 1  # only the off-duty confirmation
    [back] = await officer.say("/onduty")
    assert "trở lại" in back
    [bad] = await officer.say("/offduty sometime")
    assert "Cách dùng" in bad


@pytest.mark.usefixtures("people")
async def test_policy_is_inherited_from_the_parent_area(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock, database_url,
        tmp_path, monkeypatch, capsys) -> None:
    policy = '{"normal": {"steps": [{"after": "0m", "notify": ["primary"]}, ' \
             '{"after": "2m", "notify": ["chief"]}]}}'
    assert await set_policy(database_url, "QH", policy, tmp_path, monkeypatch, ".json") == 0
    capsys.readouterr()
    assert await cli("escalation", "show", "HX") == 0
    shown = capsys.readouterr()
    assert "kế thừa từ địa bàn QH" in shown.err
    assert '"after": "2m"' in shown.out
    assert await cli("escalation", "show", "BT") == 0
    assert "theo mặc định của hệ thống" in capsys.readouterr().err

    await file_report(Chat(fake_telegram, LIAISON_HX))
    clock.advance(timedelta(minutes=2))
    await app.tick()
    assert len(await escalations(sessions, CHIEF_QH)) == 1


async def test_invalid_policies_are_refused_with_a_clear_reason(
        database_url, tmp_path, monkeypatch, capsys, directory) -> None:
    cases = {
        '[urgent]\nsteps = [{after = "5m", notify = "sergeant"}]': "unknown level(s) sergeant",
        '[urgent]\nsteps = [{after = "soon", notify = "primary"}]': "is not a duration",
        '[normal]\nsteps = [{after = "1h", notify = "primary"}, '
        '{after = "5m", notify = "backup"}]': "must not go back in time",
        '[urgent]\nsteps = []': "give at least one step",
        '[weekend]\nsteps = []': "unknown section(s) weekend",
        'this is not toml': "policy.toml",
    }
    for text, reason in cases.items():
        assert await set_policy(database_url, "HX", text, tmp_path, monkeypatch) == 2, text
        assert reason in capsys.readouterr().err, text
    assert await set_policy(database_url, "NOPE", URGENT_POLICY, tmp_path, monkeypatch) == 2
    assert "no area with code 'NOPE'" in capsys.readouterr().err


@pytest.mark.usefixtures("people")
async def test_deadline_missed_during_downtime_fires_once_after_restart(
        settings, fake_telegram: FakeTelegram, sessions, clock: FakeClock) -> None:
    first = App(settings, clock)
    await first.start()
    await file_report(Chat(fake_telegram, LIAISON_HX))
    await first.stop()
    clock.advance(timedelta(hours=3))  # the 60-minute backup deadline passes while down
    second = App(settings, clock)
    await second.start()  # start runs the case clock once
    try:
        assert len(await escalations(sessions, BACKUP_HX)) == 1
        await second.tick()
        await second.tick()
        assert len(await escalations(sessions, BACKUP_HX)) == 1  # once, not per missed tick
        assert await escalations(sessions, CHIEF_QH) == []  # the next step counts from now
        incident = await the_incident(sessions)
        assert incident.next_escalation_at == clock.now() + timedelta(hours=3)
        await Chat(fake_telegram, BACKUP_HX).wait_text("CHƯA AI TIẾP NHẬN")
    finally:
        await second.stop()


@pytest.mark.usefixtures("people")
async def test_cases_past_their_target_are_reminded_daily_and_listed_to_the_chief(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock, database_url,
        tmp_path, monkeypatch) -> None:
    policy = '[normal]\nsteps = [{after = "0m", notify = "primary"}]\n' \
             'reminder_after = "30d"\nrevert_after = "30d"\nresolution_target = "2d"\n'
    assert await set_policy(database_url, "TH", policy, tmp_path, monkeypatch) == 0
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    await officer.tap(f"case:ack:{incident.id}")
    clock.advance(timedelta(days=1))
    assert (await app.tick())["overdue"] == 0
    clock.advance(timedelta(days=1, minutes=1))
    assert (await app.tick())["overdue"] == 1
    assert "quá thời hạn" in (await queued(sessions, OFFICER_HX))[-1]
    [digest] = await queued(sessions, CHIEF_QH)
    assert "quá hạn" in digest and incident.ref in digest
    clock.advance(timedelta(hours=3))
    assert (await app.tick())["overdue"] == 0  # once a day
    clock.advance(timedelta(days=1))
    assert (await app.tick())["overdue"] == 1
    assert len(await queued(sessions, CHIEF_QH)) == 2


@pytest.mark.usefixtures("people")
async def test_admin_reached_by_escalation_can_open_and_reassign_the_case(
        app: App, fake_telegram: FakeTelegram, sessions, clock: FakeClock, database_url,
        tmp_path, monkeypatch) -> None:
    from storage.models import Area, Person, Role, RoleAssignment

    now = clock.now()
    async with sessions() as session, session.begin():
        top = (await session.execute(select(Area).where(Area.code == "TH"))).scalar_one()
        admin = Person(name="Ban Chỉ đạo tỉnh", created_at=now)
        session.add(admin)
        await session.flush()
        session.add_all([RoleAssignment(person_id=admin.id, role=Role.ADMIN, area_id=top.id,
                                        created_at=now),
                         Account(channel="telegram", external_id="970", person_id=admin.id,
                                 created_at=now, code_failures=0)])
    policy = '[normal]\nsteps = [{after = "0m", notify = "primary"}, ' \
             '{after = "5m", notify = "parent_admins"}]\n'
    assert await set_policy(database_url, "HX", policy, tmp_path, monkeypatch) == 0
    await file_report(Chat(fake_telegram, LIAISON_HX))
    incident = await the_incident(sessions)
    clock.advance(timedelta(minutes=5))
    await app.tick()
    admin_chat = Chat(fake_telegram, 970)
    assert incident.ref in await admin_chat.wait_text("CHƯA AI TIẾP NHẬN")
    [details] = await admin_chat.tap(f"case:view:{incident.id}")
    assert "cổng trường" in details
    await admin_chat.tap(f"case:reassign:{incident.id}")
    backup = admin_chat.button(f"case:reassign:{incident.id}:")
    [done] = await admin_chat.tap(backup)
    assert "Đã chuyển" in done


@pytest.mark.usefixtures("people")
async def test_an_overdue_case_is_found_among_hundreds_of_open_ones(
        app: App, sessions, clock: FakeClock) -> None:
    from storage.models import Person, School

    now = clock.now()
    async with sessions() as session, session.begin():
        school = (await session.execute(select(School).where(School.code == "THCS-HX")))\
            .scalar_one()
        officer = (await session.execute(select(Person).where(
            Person.phone == "+84912345678"))).scalar_one()

        def case(n: int, created: object) -> Incident:
            return Incident(ref=f"HX-26-T{n:04d}", school_id=school.id, area_id=school.area_id,
                            reporter_role="liaison", category="bullying", status="acknowledged",
                            assigned_person_id=officer.id, created_at=created,
                            updated_at=created, resolution_due_at=created + timedelta(days=14))

        # open for two days: far from their 14-day target, and older than any grace period
        session.add_all([case(n, now - timedelta(days=2)) for n in range(210)])
        late = case(999, now - timedelta(days=20))
        session.add(late)
    assert (await app.tick())["overdue"] == 1
    assert any("HX-26-T0999" in t and "quá thời hạn" in t
               for t in await queued(sessions, OFFICER_HX))
