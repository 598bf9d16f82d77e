"""Reach the web console as a person would: /web in the chat, the link, the button."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.services.cases import Actor, CaseService, Draft
from bot.services.directory import normalise_phone
from storage.models import Account, Person, Role, School
from tests.auxil.fake_telegram import FakeTelegram
from tests.auxil.people import ADMIN_PHONE, PHONES, Chat

TZ = ZoneInfo("Asia/Ho_Chi_Minh")

LINK = re.compile(r"(http://\S+/console/in/[\w-]+)")


async def web_link(fake: FakeTelegram, chat_id: int) -> str:
    """Send /web from this chat and return the sign-in link the bot answers with."""
    chat = Chat(fake, chat_id)
    mark = chat.mark()
    fake.user_message(chat_id, "/web")
    await fake.wait_for(lambda: any(LINK.search(t) for t in chat.received()[mark:]), 10.0)
    return next(found[1] for t in chat.received()[mark:] if (found := LINK.search(t)))


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 (aiohttp's jar refuses IP hosts by default)
    and does not follow redirects on its own (tests look at them)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(client: aiohttp.ClientSession, fake: FakeTelegram, chat_id: int) -> str:
    """Sign this chat's person in; return the console's base URL."""
    link = await web_link(fake, chat_id)
    async with client.post(link, allow_redirects=False) as response:
        assert response.status == 303, await response.text()
    return link.split("/console/")[0] + "/console"


async def csrf_of(client: aiohttp.ClientSession, url: str) -> str:
    """The CSRF token the console put in this page's forms."""
    async with client.get(url) as response:
        html = await response.text()
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found[1]


async def file_case(sessions: async_sessionmaker, when: datetime, chat_id: int, school: str,
                    *, urgent: bool = False, description: str = "Học sinh bị đánh ở cổng trường"
                    ) -> tuple[int, str]:
    """A liaison reports a case through the case service; return its id and reference."""
    async with sessions() as session, session.begin():
        person = (await session.execute(select(Person).where(
            Person.phone == normalise_phone(PHONES[chat_id])))).scalar_one()
        found = (await session.execute(select(School).where(School.code == school)))\
            .scalar_one()
        service = CaseService(session, now=when, tz=TZ, default_language="vi")
        incident = await service.create(Actor(person, "telegram"), found, Role.LIAISON, Draft(
            category="physical", description=description), urgent=urgent)
        return incident.id, incident.ref


ADMIN_CHAT = 931  # the province admin's Telegram chat, once link_admin gave it one


async def link_admin(sessions: async_sessionmaker, clock: Any) -> None:
    """Give the province admin (tests.auxil.people.add_province_admin) a Telegram chat."""
    async with sessions() as session, session.begin():
        admin = (await session.execute(select(Person).where(
            Person.phone == normalise_phone(ADMIN_PHONE)))).scalar_one()
        session.add(Account(channel="telegram", external_id=str(ADMIN_CHAT),
                            person_id=admin.id, created_at=clock.now(), code_failures=0))


async def person_id(sessions: async_sessionmaker, chat_id: int) -> int:
    """The person behind a chat."""
    async with sessions() as session:
        return (await session.execute(select(Account.person_id).where(
            Account.external_id == str(chat_id)))).scalar_one()
