"""Link directory people to Telegram chats, and drive a chat step by step, for case tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core.clock import Clock
from bot.services.directory import normalise_phone
from storage.models import Account, Area, Person, Role, RoleAssignment, School
from tests.auxil.fake_telegram import FakeTelegram

# Chat ids used across case tests.
LIAISON_HX = 901  # Nguyễn Thị Hoa, liaison of THCS-HX (area HX)
LIAISON_PL = 902  # Đỗ Minh Châu, liaison of TH-PL (area PL: no officer of its own)
OFFICER_HX = 911  # Lê Văn An, primary HX
BACKUP_HX = 912  # Trần Văn Bảo, backup HX
CHIEF_QH = 913  # Phạm Thị Bình, chief QH (above HX and PL)
OFFICER_BT = 914  # Hà Văn Cường, primary BT (another district)
PARENT_HX = 921  # a parent of THCS-HX

PHONES = {LIAISON_HX: "0901234567", LIAISON_PL: "0908888999", OFFICER_HX: "0912345678",
          BACKUP_HX: "0912000111", CHIEF_QH: "0987654321", OFFICER_BT: "0913000222"}


async def link_everyone(sessions: async_sessionmaker, clock: Clock) -> None:
    """Give every directory person of the test directory a Telegram account, and add a parent."""
    now = clock.now()
    async with sessions() as session, session.begin():
        for chat_id, phone in PHONES.items():
            person = (await session.execute(
                select(Person).where(Person.phone == normalise_phone(phone)))).scalar_one()
            session.add(Account(channel="telegram", external_id=str(chat_id),
                                person_id=person.id, created_at=now, code_failures=0))
        school = (await session.execute(select(School).where(School.code == "THCS-HX")))\
            .scalar_one()
        parent = Person(created_at=now)
        session.add(parent)
        await session.flush()
        session.add(RoleAssignment(person_id=parent.id, role=Role.PARENT, school_id=school.id,
                                   created_at=now))
        session.add(Account(channel="telegram", external_id=str(PARENT_HX), person_id=parent.id,
                            display_name="Phụ Huynh Bí Mật", created_at=now, code_failures=0))


ADMIN_PHONE = "0977000333"  # Vũ Thị Quản, admin of the province (TH)


async def add_province_admin(sessions: async_sessionmaker, clock: Clock) -> None:
    """Add an admin of the province, with no messenger account yet."""
    async with sessions() as session, session.begin():
        province = (await session.execute(select(Area).where(Area.code == "TH"))).scalar_one()
        admin = Person(name="Vũ Thị Quản", phone=normalise_phone(ADMIN_PHONE),
                       created_at=clock.now())
        session.add(admin)
        await session.flush()
        session.add(RoleAssignment(person_id=admin.id, role=Role.ADMIN, area_id=province.id,
                                   created_at=clock.now()))


@dataclass
class Chat:
    """One person's chat with the bot, seen from the fake Telegram."""

    fake: FakeTelegram
    chat_id: int

    def received(self) -> list[str]:
        """Return every text (and caption) the bot sent to this chat."""
        return [p.get("text") or p.get("caption") or "" for c in self.fake.calls
                if c.method.startswith("send") and (p := c.params).get("_ok")
                and int(p["chat_id"]) == self.chat_id]

    def last_buttons(self) -> list[tuple[str, str]]:
        """Return the buttons of the last message that had any."""
        for params in reversed(self.fake.sent(self.chat_id)):
            buttons = self.fake.buttons(params)
            if buttons:
                return buttons
        return []

    def button(self, prefix: str) -> str:
        """Return the callback data of the latest button whose data starts with prefix."""
        for params in reversed(self.fake.sent(self.chat_id)):
            for _label, data in self.fake.buttons(params):
                if data.startswith(prefix):
                    return data
        raise AssertionError(f"no button {prefix!r} in chat {self.chat_id}: {self.received()}")

    def mark(self) -> int:
        """Return how many messages the chat holds now, to wait for what comes after."""
        return len(self.received())

    async def since(self, mark: int, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until count messages arrived after mark; return exactly those."""
        return (await self.wait(mark + count, timeout))[mark:mark + count]

    async def wait_text(self, fragment: str, timeout: float = 10.0) -> str:
        """Wait until a message containing fragment has arrived; return it."""
        await self.fake.wait_for(lambda: any(fragment in t for t in self.received()), timeout)
        return next(t for t in self.received() if fragment in t)

    async def wait(self, total: int, timeout: float = 10.0) -> list[str]:
        """Wait until the chat holds total messages; return those past what was seen."""
        await self.fake.wait_for(lambda: len(self.received()) >= total, timeout)
        return self.received()

    async def say(self, text: str | None, replies: int = 1, **extra: Any) -> list[str]:
        """Send a message and return the replies it brings."""
        before = len(self.received())
        self.fake.user_message(self.chat_id, text, **extra)
        return (await self.wait(before + replies))[before:]

    async def tap(self, data: str, replies: int = 1) -> list[str]:
        """Press a button and return the replies it brings."""
        before = len(self.received())
        self.fake.press(self.chat_id, data)
        return (await self.wait(before + replies))[before:]


async def ask_and_answer(officer: Chat, reporter: Chat, case_id: int, question: str,
                         answer: str) -> str:
    """The officer asks the case's reporter a question through the relay and the reporter
    answers it; return the question as the reporter received it."""
    await officer.tap(f"case:ask:{case_id}")
    seen = reporter.mark()
    await officer.say(question)
    [received] = await reporter.since(seen)
    await reporter.tap(f"case:reply:{case_id}")
    await reporter.say(answer)
    return received
