"""Invitation codes: random, expiring, bound to a role and a scope (and maybe a person)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.i18n import Translator
from bot.services.codes import unused_code, unused_codes
from bot.services.directory import normalise_phone
from storage.models import Account, Area, Duty, Invitation, Person, Role, RoleAssignment, School

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)


class InvitationError(ValueError):
    """An invitation cannot be created as asked; `text(t)` says why in the reader's language
    (`invitation.problem.KEY`), str() in English (logs)."""

    def __init__(self, key: str, **values: object) -> None:
        self.key, self.values = key, values
        super().__init__(self.text(Translator("en")))

    def text(self, t: Translator) -> str:
        """Why, in t's language."""
        return t(f"invitation.problem.{self.key}", **self.values)


def parse_duration(text: str) -> timedelta:
    """Parse 30m, 12h, 7d or 2w."""
    match = _DURATION.match(text)
    if not match:
        raise InvitationError("duration", text=text)
    n, unit = int(match.group(1)), match.group(2).lower()
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n),
             "w": timedelta(weeks=n)}[unit]
    if delta <= timedelta(0):
        raise InvitationError("duration_positive")
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
        raise InvitationError("role")
    if uses < 1:
        raise InvitationError("uses")
    area = school = person = None
    if role == Role.LIAISON:
        if not school_code or area_code:
            raise InvitationError("liaison_scope")
        school = (await session.execute(select(School).where(School.code == school_code)))\
            .scalar_one_or_none()
        if school is None:
            raise InvitationError("no_school", code=school_code)
    else:
        if not area_code or school_code:
            raise InvitationError("area_scope", role=role)
        area = (await session.execute(select(Area).where(Area.code == area_code)))\
            .scalar_one_or_none()
        if area is None:
            raise InvitationError("no_area", code=area_code)
    if role == Role.OFFICER:
        duty = duty or Duty.PRIMARY
        if duty not in set(Duty):
            raise InvitationError("duty")
    elif duty:
        raise InvitationError("duty_not_officer")
    if person_phone:
        phone = normalise_phone(person_phone)
        person = (await session.execute(select(Person).where(Person.phone == phone)))\
            .scalar_one_or_none()
        if person is None:
            raise InvitationError("no_person", phone=person_phone)
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


async def personal_invitations(session: AsyncSession, now: datetime, expires_in: timedelta,
                               area_ids: set[int] | None = None
                               ) -> list[tuple[Person, RoleAssignment, Invitation]]:
    """A personal code for every directory person (officer, liaison or admin) with a phone
    and no messenger account yet, reusing one still valid; within these areas (and their
    schools) when given. Ordered by name, for printing. A batch of queries, not a few per
    person (6,900 people took 41 s that way)."""
    linked = select(Account.person_id).where(Account.person_id.is_not(None))
    people = (await session.execute(
        select(Person).where(Person.phone.is_not(None), Person.id.not_in(linked))
        .order_by(Person.name, Person.id))).scalars().all()
    wanted: list[tuple[Person, RoleAssignment]] = []
    for person in people:
        staff = [r for r in person.roles if r.role in (Role.OFFICER, Role.LIAISON, Role.ADMIN)
                 and (area_ids is None or (r.school.area_id if r.school else r.area_id)
                      in area_ids)]
        if staff:
            wanted.append((person, staff[0]))
    valid: dict[int, Invitation] = {}
    ids = [person.id for person, _ in wanted]
    for start in range(0, len(ids), 500):  # the latest-expiring valid code of each person
        for invitation in (await session.execute(
                select(Invitation).where(
                    Invitation.person_id.in_(ids[start:start + 500]),
                    Invitation.revoked_at.is_(None), Invitation.expires_at > now,
                    Invitation.used_count < Invitation.max_uses)
                .order_by(Invitation.expires_at))).scalars():
            valid[invitation.person_id or 0] = invitation
    missing = [(person, role) for person, role in wanted if person.id not in valid]
    for (person, role), code in zip(missing, await unused_codes(session, len(missing)),
                                    strict=True):
        invitation = Invitation(
            code=code, role=role.role, area_id=role.area_id, school_id=role.school_id,
            duty=role.duty, person_id=person.id, max_uses=1, used_count=0,
            expires_at=now + expires_in, created_at=now)
        session.add(invitation)
        valid[person.id] = invitation
    await session.flush()
    return [(person, role, valid[person.id]) for person, role in wanted]
