"""Invitation codes: random, expiring, bound to a role and a scope (and maybe a person)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.codes import unused_code
from bot.services.directory import normalise_phone
from storage.models import Area, Duty, Invitation, Person, Role, School

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)


class InvitationError(ValueError):
    """An invitation cannot be created as asked."""


def parse_duration(text: str) -> timedelta:
    """Parse 30m, 12h, 7d or 2w."""
    match = _DURATION.match(text)
    if not match:
        raise InvitationError(f"cannot read the duration {text!r}; write e.g. 12h, 7d or 2w")
    n, unit = int(match.group(1)), match.group(2).lower()
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n),
             "w": timedelta(weeks=n)}[unit]
    if delta <= timedelta(0):
        raise InvitationError("the duration must be positive")
    return delta


async def create_invitation(
    session: AsyncSession,
    *,
    role: str,
    now: datetime,
    expires_in: timedelta,
    area_code: str | None = None,
    school_code: str | None = None,
    person_phone: str | None = None,
    duty: str | None = None,
    uses: int = 1,
) -> Invitation:
    """Create an invitation after checking that role and scope fit together."""
    if role not in {Role.OFFICER, Role.LIAISON, Role.ADMIN}:
        raise InvitationError("role must be officer, liaison or admin (parents use school codes)")
    if uses < 1:
        raise InvitationError("--uses must be at least 1")
    area = school = person = None
    if role == Role.LIAISON:
        if not school_code or area_code:
            raise InvitationError("a liaison invitation needs --school CODE (and no --area)")
        school = (await session.execute(select(School).where(School.code == school_code)))\
            .scalar_one_or_none()
        if school is None:
            raise InvitationError(f"no school with code {school_code!r} in the directory")
    else:
        if not area_code or school_code:
            raise InvitationError(f"an {role} invitation needs --area CODE (and no --school)")
        area = (await session.execute(select(Area).where(Area.code == area_code)))\
            .scalar_one_or_none()
        if area is None:
            raise InvitationError(f"no area with code {area_code!r} in the directory")
    if role == Role.OFFICER:
        duty = duty or Duty.PRIMARY
        if duty not in set(Duty):
            raise InvitationError("duty must be primary, backup or chief")
    elif duty:
        raise InvitationError("--duty applies to officer invitations only")
    if person_phone:
        phone = normalise_phone(person_phone)
        person = (await session.execute(select(Person).where(Person.phone == phone)))\
            .scalar_one_or_none()
        if person is None:
            raise InvitationError(f"no person with phone {person_phone!r} in the directory")
    invitation = Invitation(
        code=await unused_code(session), role=role, area=area, school=school, duty=duty,
        person=person, max_uses=uses, used_count=0,
        expires_at=(now + expires_in).replace(microsecond=0), created_at=now,
    )
    session.add(invitation)
    await session.flush()
    return invitation


async def consume(session: AsyncSession, invitation: Invitation, now: datetime) -> bool:
    """Use one of the invitation's uses, atomically; False if it is used up or expired."""
    result = await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.used_count < Invitation.max_uses,
               Invitation.expires_at > now, Invitation.revoked_at.is_(None))
        .values(used_count=Invitation.used_count + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
