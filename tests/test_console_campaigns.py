"""The console's Tuyên truyền and Leo thang pages: campaigns and escalation policies, driven
over HTTP as a browser would, with their effect checked where people notice it (the chat)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.services import escalation
from storage.models import Area, AuditEvent, Campaign, CampaignStatus, Incident, Person
from tests.auxil.console import (
    ADMIN_CHAT,
    browser,
    csrf_of,
    file_case,
    link_admin,
    sign_in,
)
from tests.auxil.helpers import count, eventually
from tests.auxil.people import (
    CHIEF_QH,
    LIAISON_HX,
    OFFICER_HX,
    PARENT_HX,
    Chat,
    add_province_admin,
    link_everyone,
)


@pytest.fixture
async def admin(app, directory, sessions, clock) -> None:
    """The test directory with Telegram accounts, and a province admin who has one too."""
    await link_everyone(sessions, clock)
    await add_province_admin(sessions, clock)
    await link_admin(sessions, clock)


async def _area_id(sessions, code: str) -> int:
    async with sessions() as session:
        return (await session.execute(select(Area.id).where(Area.code == code))).scalar_one()


async def test_an_admin_creates_previews_starts_and_follows_a_campaign(
        app, admin, fake_telegram, sessions, clock):
    hx = await _area_id(sessions, "HX")
    parent, me = Chat(fake_telegram, PARENT_HX), Chat(fake_telegram, ADMIN_CHAT)
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        async with client.get(f"{base}/campaigns") as page:
            html = await page.text()
        assert page.status == 200 and "Thư viện nội dung" in html
        assert "Chưa có chiến dịch nào." in html
        token = await csrf_of(client, f"{base}/campaigns/new")
        form = {"csrf": token, "name": "Tuần lễ an toàn Hồi Xuân", "area": str(hx),
                "role": "parent", "content": "school_violence", "repeat": "once"}
        # The live count: the parent of THCS-HX is the one parent below HX.
        async with client.post(f"{base}/campaigns/reach", data=form) as reach:
            assert "Hiện sẽ gửi tới 1 người trong số 1 người" in await reach.text()
        async with client.post(f"{base}/campaigns/reach",
                               data={**form, "role": ["parent", "liaison"]}) as reach:
            assert "Hiện sẽ gửi tới 2 người trong số 2 người" in await reach.text()
        # A teachers' do-and-don't addressed to parents: the form asks before saving it.
        for_staff = {**form, "content": "staff_disclosure_do"}
        async with client.post(f"{base}/campaigns", data=for_staff) as asked:
            html = await asked.text()
        assert asked.status == 422
        assert "không được viết cho đối tượng: phụ huynh" in html and 'name="audience_ok"' in html
        assert await count(sessions, Campaign) == 0
        # Nothing to say: the form comes back with the reason, nothing is stored.
        async with client.post(f"{base}/campaigns", data={**form, "content": []}) as bad:
            html = await bad.text()
        assert bad.status == 422
        assert "Hãy chọn nội dung trong thư viện hoặc tự soạn nội dung." in html
        assert 'value="Tuần lễ an toàn Hồi Xuân"' in html  # what was typed is kept
        assert await count(sessions, Campaign) == 0
        async with client.post(f"{base}/campaigns", data=form, allow_redirects=False) as made:
            assert made.status == 303
            where = made.headers["Location"]
        campaign_id = int(re.search(r"/campaigns/(\d+)", where)[1])
        async with client.get(base.removesuffix("/console") + where) as page:
            html = await page.text()
        assert "Đã lưu bản nháp" in html and "bản nháp" in html
        assert "Bạo lực học đường" in html  # the library text, as the parent will read it
        assert "Bắt đầu" in html and "Tạm dừng" not in html
        mark = me.mark()
        async with client.post(f"{base}/campaigns/{campaign_id}/preview",
                               data={"csrf": token}) as sent:
            assert "Đã gửi bản xem trước" in await sent.text()
        assert "XEM TRƯỚC" in (await me.since(mark))[0]
        assert not parent.received()  # a preview is the admin's alone
        async with client.post(f"{base}/campaigns/{campaign_id}/start",
                               data={"csrf": token}) as started:
            assert "Chiến dịch đã bắt đầu." in await started.text()
        mark = parent.mark()
        await app.tick()  # the campaign clock opens the run and queues its audience
        assert "Bạo lực học đường" in (await parent.since(mark))[0]

        async def outreach() -> tuple[str, ...] | None:
            async with client.get(f"{base}/campaigns/{campaign_id}") as page:
                row = re.search(r"<td>Xã Hồi Xuân</td><td>(\d+)</td><td>(\d+)</td>",
                                await page.text())
            return row.groups() if row else None

        async def sent_one() -> bool:  # the worker marks the row sent after Telegram's answer
            return await outreach() == ("1", "1")  # targeted 1, sent 1

        await eventually(sent_one)
        # Once sent, a one-off campaign is finished: it can only be cancelled.
        async with client.post(f"{base}/campaigns/{campaign_id}/pause",
                               data={"csrf": token}) as refused:
            assert refused.status == 409
            assert "«đã xong»" in await refused.text()
        # Confirmed, the same mismatched campaign is saved.
        async with client.post(f"{base}/campaigns", data={**for_staff, "audience_ok": "1"},
                               allow_redirects=False) as confirmed:
            assert confirmed.status == 303
        assert await count(sessions, Campaign) == 2
    async with sessions() as session:
        actions = (await session.execute(select(AuditEvent.action).order_by(AuditEvent.id)))\
            .scalars().all()
    assert "campaign_created" in actions and "campaign_start" in actions


async def test_a_paused_campaign_holds_its_messages_until_resumed(
        app, admin, fake_telegram, sessions, clock):
    qh = await _area_id(sessions, "QH")
    parent = Chat(fake_telegram, PARENT_HX)
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        token = await csrf_of(client, f"{base}/campaigns/new")
        at = (clock.now() + timedelta(minutes=20)).astimezone(app.settings.tz)
        async with client.post(f"{base}/campaigns", data={
                "csrf": token, "name": "Hằng tuần", "area": str(qh), "role": "parent",
                "text_vi": "Cha mẹ hãy trò chuyện với con mỗi tối.", "repeat": "weekly",
                "at": at.strftime("%Y-%m-%dT%H:%M")}, allow_redirects=False) as made:
            campaign_id = int(re.search(r"/campaigns/(\d+)", made.headers["Location"])[1])
        for action in ("start", "pause"):
            async with client.post(f"{base}/campaigns/{campaign_id}/{action}",
                                   data={"csrf": token}) as done:
                assert done.status == 200
        clock.advance(timedelta(minutes=21))  # within the console's idle limit
        await app.tick()  # the run is due, but the campaign is paused: nothing goes out
        async with sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
        assert campaign.status == CampaignStatus.PAUSED and campaign.runs_done == 0
        mark = parent.mark()
        async with client.post(f"{base}/campaigns/{campaign_id}/resume",
                               data={"csrf": token}) as done:
            assert "Đã tiếp tục chiến dịch." in await done.text()
        await app.tick()
        assert "trò chuyện với con" in (await parent.since(mark))[0]
        async with client.get(f"{base}/campaigns/{campaign_id}") as page:
            html = await page.text()
        assert "Hằng tuần" in html and "Tạm dừng" in html  # weekly, running: can pause
        async with client.post(f"{base}/campaigns/{campaign_id}/cancel",
                               data={"csrf": token}) as done:
            assert "Đã hủy chiến dịch" in await done.text()
        async with sessions() as session:
            assert (await session.get(Campaign, campaign_id)).next_run_at is None


async def test_campaigns_are_for_admins_and_only_within_their_areas(
        app, admin, fake_telegram, sessions, clock):
    bt = await _area_id(sessions, "BT")
    async with browser() as officer:
        base = await sign_in(officer, fake_telegram, OFFICER_HX)
        async with officer.get(f"{base}/campaigns") as page:
            assert page.status == 403
        async with officer.get(f"{base}/") as page:
            assert "/console/campaigns" not in await page.text()  # not offered either
    # A district admin (of QH) neither sees nor can reach a campaign for BT.
    async with sessions() as session, session.begin():
        from storage.models import Role, RoleAssignment

        chief = (await session.execute(select(Person).where(
            Person.name == "Phạm Thị Bình"))).scalar_one()
        qh = await session.scalar(select(Area.id).where(Area.code == "QH"))
        session.add(RoleAssignment(person_id=chief.id, role=Role.ADMIN, area_id=qh,
                                   created_at=clock.now()))
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        token = await csrf_of(client, f"{base}/campaigns/new")
        async with client.post(f"{base}/campaigns", data={
                "csrf": token, "name": "Bá Thước", "area": str(bt), "role": "parent",
                "content": "abuse_signs", "repeat": "once"}, allow_redirects=False) as made:
            campaign_id = int(re.search(r"/campaigns/(\d+)", made.headers["Location"])[1])
    async with browser() as district:
        base = await sign_in(district, fake_telegram, CHIEF_QH)
        async with district.get(f"{base}/campaigns") as page:
            assert "Bá Thước" not in await page.text()
        async with district.get(f"{base}/campaigns/{campaign_id}") as page:
            assert page.status == 404
        token = await csrf_of(district, f"{base}/campaigns/new")
        async with district.post(f"{base}/campaigns/{campaign_id}/start",
                                 data={"csrf": token}) as page:
            assert page.status == 404
        async with district.post(f"{base}/campaigns", data={  # a forged area
                "csrf": token, "name": "x", "area": str(bt), "role": "parent",
                "content": "abuse_signs", "repeat": "once"}) as page:
            assert page.status == 403
    async with sessions() as session:
        assert (await session.get(Campaign, campaign_id)).status == CampaignStatus.DRAFT


async def test_escalation_policy_is_shown_with_its_source_and_edited_in_vietnamese(
        app, admin, fake_telegram, sessions, clock):
    async with browser() as officer:  # an officer reads the policy of their area, no more
        base = await sign_in(officer, fake_telegram, OFFICER_HX)
        async with officer.get(f"{base}/escalation/HX") as page:
            html = await page.text()
        assert "chính sách mặc định của hệ thống" in html and "Lưu chính sách" not in html
        token = await csrf_of(officer, f"{base}/escalation")
        async with officer.post(f"{base}/escalation/HX",
                                data={"csrf": token, "urgent.after.1": "0m"}) as page:
            assert page.status == 403
        async with officer.get(f"{base}/escalation/BT") as page:
            assert page.status == 403
    async with browser() as client:
        base = await sign_in(client, fake_telegram, ADMIN_CHAT)
        async with client.get(f"{base}/escalation/QH") as page:
            html = await page.text()
        token = re.search(r'name="csrf" value="([^"]+)"', html)[1]
        form = _form_of(html)
        assert form["urgent.after.2"] == "10 phút" and form["urgent.notify.2"] == ["chief"]
        # The chief should hear of an unacknowledged urgent case after 3 minutes, not 10;
        # a typo first.
        bad = {**form, "csrf": token, "urgent.after.2": "3 phut"}
        async with client.post(f"{base}/escalation/QH", data=_pairs(bad)) as page:
            html = await page.text()
        assert page.status == 422
        assert ("Vụ khẩn cấp, bước 2, thời điểm: «3 phut» không phải là một khoảng thời gian"
                in html)
        assert 'class="invalid"' in html and 'value="3 phut"' in html
        async with sessions() as session:
            assert (await escalation.effective(session, await _area_id(sessions, "HX")))[1] \
                is None  # nothing saved
        good = {**form, "csrf": token, "urgent.after.2": "3 phút"}
        async with client.post(f"{base}/escalation/QH", data=_pairs(good)) as page:
            assert "Đã lưu chính sách leo thang" in await page.text()
        async with client.get(f"{base}/escalation") as page:
            html = await page.text()
        assert re.search(r"Xã Hồi Xuân</a>.*?</td>\s*<td>Theo Huyện Quan Hóa</td>", html, re.S)
    # The policy works where people notice it: the chief hears after 3 minutes.
    chief = Chat(fake_telegram, CHIEF_QH)
    await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX", urgent=True)
    clock.advance(timedelta(minutes=2, seconds=59))
    await app.tick()
    async with sessions() as session:
        assert (await session.execute(select(Incident.escalation_step))).scalar_one() == 1
    mark = chief.mark()
    clock.advance(timedelta(seconds=1))
    await app.tick()
    assert "CHƯA AI TIẾP NHẬN" in (await chief.since(mark))[0]


def _form_of(html: str) -> dict[str, object]:
    """The escalation form's fields as the page filled them (checkboxes as lists)."""
    form: dict[str, object] = {}
    for name, value in re.findall(r'<input type="(?:text|number)" name="([^"]+)" value="([^"]*)"',
                                  html):
        form[name] = value
    for name, value in re.findall(
            r'<input type="checkbox" name="([^"]+)" value="([^"]+)" checked', html):
        form.setdefault(name, []).append(value)  # type: ignore[union-attr]
    return form


def _pairs(form: dict[str, object]) -> list[tuple[str, str]]:
    return [(k, v) for k, vs in form.items() for v in (vs if isinstance(vs, list) else [vs])]


async def test_the_dashboard_counts_undelivered_messages_of_the_admins_areas_only(
        app, admin, fake_telegram, sessions, clock):
    from bot.core.messages import Outbound
    from bot.core.outbox import enqueue
    from bot.services.campaigns import CANCELLED
    from storage.models import Account, Outbox, OutboxStatus, Role, RoleAssignment

    async with sessions() as session, session.begin():
        for n, chat in enumerate((OFFICER_HX, OFFICER_HX, 914)):  # HX twice, BT (Hà Văn Cường)
            account = (await session.execute(select(Account).where(
                Account.external_id == str(chat)))).scalar_one()
            await enqueue(session, account, Outbound("x"), key=f"lost:{n}", now=clock.now())
        chief = (await session.execute(select(Person).where(
            Person.name == "Phạm Thị Bình"))).scalar_one()
        session.add(RoleAssignment(person_id=chief.id, role=Role.ADMIN,
                                   area_id=await session.scalar(
                                       select(Area.id).where(Area.code == "QH")),
                                   created_at=clock.now()))
    async with sessions() as session, session.begin():
        rows = (await session.execute(select(Outbox).where(
            Outbox.idempotency_key.like("lost:%")).order_by(Outbox.id))).scalars().all()
        for row, error in zip(rows, ("Forbidden: bot was blocked", CANCELLED, "Bad Request"),
                              strict=True):
            row.status, row.last_error = OutboxStatus.DEAD, error
    async with browser() as district:  # QH's admin: the HX officer's one real failure
        base = await sign_in(district, fake_telegram, CHIEF_QH)
        async with district.get(f"{base}/") as page:
            assert "Tin nhắn không gửi được: 1" in await page.text()
    async with browser() as province:  # the province: both real failures
        base = await sign_in(province, fake_telegram, ADMIN_CHAT)
        async with province.get(f"{base}/") as page:
            assert "Tin nhắn không gửi được: 2" in await page.text()
