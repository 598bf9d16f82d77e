"""SQLAlchemy models: the directory, people and accounts, roles, invitations, state, outbox."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.crypto import EncryptedFloat, EncryptedJSON, EncryptedText

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and always returned timezone-aware (SQLite has no tz)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic needs them on SQLite)."""

    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    """What a person may do, always within a scope (an area or a school)."""

    OFFICER = "officer"
    LIAISON = "liaison"
    PARENT = "parent"
    ADMIN = "admin"
    # Someone who reported through a school's public web page: always anonymous, nothing
    # else (no awareness messages, no menu beyond following their report up).
    PUBLIC = "public"


class Duty(enum.StrEnum):
    """An officer's place in an area's chain."""

    PRIMARY = "primary"
    BACKUP = "backup"
    CHIEF = "chief"


class OutboxStatus(enum.StrEnum):
    """Where an outbound message is in its life."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


class Priority(enum.IntEnum):
    """Delivery lanes: lower goes first."""

    ALERT = 0
    REPLY = 10
    NOTICE = 50
    CAMPAIGN = 100


class Area(Base):
    """An administrative unit; a tree of any depth (province → commune → village …)."""

    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    level: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)

    parent: Mapped[Area | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Area]] = relationship(back_populates="parent")
    schools: Mapped[list[School]] = relationship(back_populates="area")


class School(Base):
    """A school; it belongs to exactly one area and has a public code for parents."""

    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    level: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(500))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    parent_code: Mapped[str] = mapped_column(String(32), unique=True)
    # Whether anyone may report for this school from its public web page (/chat/s/<code>).
    public_reports: Mapped[bool] = mapped_column(default=False, server_default="0")

    area: Mapped[Area] = relationship(back_populates="schools", lazy="selectin")


class Person(Base):
    """A human being, whatever messengers they use."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32), unique=True)
    language: Mapped[str | None] = mapped_column(String(8))
    alert_channel: Mapped[str | None] = mapped_column(String(16))
    off_duty_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Awareness messages: consent and preferences.
    campaigns_stopped: Mapped[bool] = mapped_column(default=False, server_default="0")
    topics_excluded: Mapped[list[str] | None] = mapped_column(JSON)
    campaign_frequency: Mapped[str | None] = mapped_column(String(16))  # None = every message
    last_campaign_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # forgotten on request

    accounts: Mapped[list[Account]] = relationship(back_populates="person")
    roles: Mapped[list[RoleAssignment]] = relationship(back_populates="person", lazy="selectin")


class Account(Base):
    """One messenger account (Telegram chat, Zalo user); linked to a person once registered."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(255))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    code_failures: Mapped[int] = mapped_column(Integer, default=0)
    code_window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    code_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which command menu the messenger was last told to show this chat (Telegram's
    # setMyCommands): a digest of the commands and their language; None = the default menu.
    commands_digest: Mapped[str | None] = mapped_column(String(32))

    person: Mapped[Person | None] = relationship(back_populates="accounts", lazy="selectin")


class RoleAssignment(Base):
    """A role held by a person within an area or a school."""

    __tablename__ = "role_assignments"
    __table_args__ = (
        UniqueConstraint("person_id", "role", "area_id", "school_id", name="uq_role_scope"),
        # Statistics: the parents registered since a moment, per school (what the report
        # takes off SchoolParents' totals to count them as of a period's end).
        Index("ix_role_assignments_since", "role", "created_at", "school_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    duty: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    person: Mapped[Person] = relationship(back_populates="roles")
    area: Mapped[Area | None] = relationship(lazy="selectin")
    school: Mapped[School | None] = relationship(lazy="selectin")


class SchoolParents(Base):
    """How many parent registrations a school has now, kept by the database itself.

    Triggers on role_assignments (migration 0021) add and take one as a parent's role is
    inserted, deleted or moved, whichever code path does it: the statistics read a
    province's 50,000 totals instead of counting 5,000,000 registrations. (A later SQLite
    migration that copies role_assignments in batch mode drops its triggers: recreate them.)
    """

    __tablename__ = "school_parents"

    school_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parents: Mapped[int] = mapped_column(Integer, default=0)


class ReachYear(Base):
    """Which reporting months of one reporting year awareness messages reached a person in
    (bit m-1 for month m), and the area the year's first one went to: the outreach figures
    are kept as messages are sent (bot/services/outreach.py), not counted per report from
    millions of sent messages. Keyed by the reporting periods' cut-off day (a setting)."""

    __tablename__ = "reach_years"

    person_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    cutoff: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    area_id: Mapped[int] = mapped_column(Integer)
    months: Mapped[int] = mapped_column(Integer)


class ReachCount(Base):
    """People first reached in a reporting period (its label: 2026-11, 2026-Q3, 2026-H1,
    2026), per area and role ("" for people of any role), each counted once, in the area of
    their reporting year's first message."""

    __tablename__ = "reach_counts"

    cutoff: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    area_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    people: Mapped[int] = mapped_column(Integer, default=0)


class ReachState(Base):
    """How far the outreach roll-up has read the sent awareness messages, per cut-off day."""

    __tablename__ = "reach_state"

    cutoff: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    rolled_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_id: Mapped[int | None] = mapped_column(BigInteger())  # the last message it read


class Invitation(Base):
    """A single-use (or N-use), expiring code that grants a role within a scope."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    duty: Mapped[str | None] = mapped_column(String(16))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    area: Mapped[Area | None] = relationship(lazy="selectin")
    school: Mapped[School | None] = relationship(lazy="selectin")
    person: Mapped[Person | None] = relationship(lazy="selectin")


class Redemption(Base):
    """Who used which invitation, when: the audit trail of every role granted."""

    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("invitations.id"), index=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    role: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class LinkCode(Base):
    """A one-time code that links another messenger account to the same person."""

    __tablename__ = "link_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Conversation(Base):
    """Where an account is in a flow; the only memory the bot has between messages."""

    __tablename__ = "conversations"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    flow: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON(), default=dict)  # drafts
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboundSeen(Base):
    """Inbound events already processed, so a redelivered update is handled once."""

    __tablename__ = "inbound_seen"
    __table_args__ = (UniqueConstraint("channel", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class InboxItem(Base):
    """A webhook delivery, stored before the messenger is told 200 and kept until handled."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("channel", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    inbound: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class Outbox(Base):
    """A message to send; written in the same transaction as the change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (
        # Claiming walks pending rows in priority order; never a sort of the whole queue.
        Index("ix_outbox_claim", "status", "priority", "id"),
        Index("ix_outbox_next", "status", "next_attempt_at"),
        Index("ix_outbox_lease", "status", "lease_until"),
        # "An earlier message to this chat is still queued" (every claim asks it of each
        # candidate): the account's queued rows alone, never its whole history.
        Index("ix_outbox_account_queue", "account_id", "status", "priority", "id"),
        # Outreach statistics: who was sent an awareness message when (campaign rows only).
        Index("ix_outbox_outreach", "sent_at", "area_id", "account_id", "campaign_run_id",
              sqlite_where=text("campaign_run_id IS NOT NULL"),
              postgresql_where=text("campaign_run_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer, default=Priority.REPLY)
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON())
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # dead: admins told
    campaign_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    area_id: Mapped[int | None] = mapped_column(Integer)  # the recipient's area, for outreach
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # text removed (retention)


class EscalationPolicy(Base):
    """An area's own escalation policy; areas without one inherit from their parent."""

    __tablename__ = "escalation_policies"

    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignStatus(enum.StrEnum):
    """A campaign's life."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class Campaign(Base):
    """Awareness messages to an audience, once or on a schedule."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    area_ids: Mapped[list[int]] = mapped_column(JSON)  # sub-areas included
    roles: Mapped[list[str]] = mapped_column(JSON)
    school_levels: Mapped[list[str] | None] = mapped_column(JSON)
    languages: Mapped[list[str] | None] = mapped_column(JSON)
    content_ids: Mapped[list[str] | None] = mapped_column(JSON)  # rotated run by run
    text_vi: Mapped[str | None] = mapped_column(Text)
    text_en: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(String(500))
    schedule: Mapped[str] = mapped_column(String(300))  # "once" | "cron: …" | "rrule: …"
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    runs_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignRun(Base):
    """One sending of a campaign; it streams its audience and can resume where it stopped."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime())
    content_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # last person id
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CampaignRunArea(Base):
    """Per run and area: who was targeted, and who could not or would not be reached."""

    __tablename__ = "campaign_run_areas"

    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id"), primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    opted_out: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)


class KeyValue(Base):
    """Small facts the app learns at run time (e.g. the bot's username for deep links)."""

    __tablename__ = "key_values"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class IncidentStatus(enum.StrEnum):
    """A case's place in its workflow."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"


CATEGORIES = (
    "physical", "bullying", "cyberbullying", "sexual_abuse", "family_violence", "trafficking",
    "drugs_gangs", "harmful_online", "child_labour", "at_risk", "other",
)
OUTCOMES = (
    "handled_by_police", "referred_school", "referred_social", "referred_health",
    "criminal_case", "administrative_sanction", "unfounded", "duplicate",
)


class Incident(Base):
    """A report of violence or abuse, and the case the police work from it."""

    __tablename__ = "incidents"
    __table_args__ = (
        # Statistics read a period's cases by these ranges (received, closed) per area; the
        # columns the figures need ride along, so the database reads the index alone (few
        # cases are written a day: wide indexes cost nothing that matters).
        Index("ix_incidents_received", "created_at", "area_id", "category", "urgent",
              "anonymous", "school_id", "acknowledged_at", "escalated_at"),
        Index("ix_incidents_closed", "closed_at", "area_id", "outcome", "resolution_due_at",
              "confirmation", "confirmation_asked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), index=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    reporter_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    reporter_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    # An anonymous report keeps neither id above: its reporter's person and account are sealed
    # with SAFESCHOOL_RELAY_KEY (only the relay opens them), and `reporter_tag`, a hash keyed
    # with it, lets the reporter list their own cases (storage/crypto.py, Relay).
    reporter_seal: Mapped[str | None] = mapped_column(Text)
    reporter_tag: Mapped[str | None] = mapped_column(String(40), index=True)
    reporter_role: Mapped[str] = mapped_column(String(16))
    anonymous: Mapped[bool] = mapped_column(default=False)
    # What a named reporter the directory does not know (a parent) left for the police.
    reporter_name: Mapped[str | None] = mapped_column(EncryptedText())
    reporter_phone: Mapped[str | None] = mapped_column(EncryptedText())
    urgent: Mapped[bool] = mapped_column(default=False)
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.NEW, index=True)
    # What can describe the case or a child is encrypted at rest (storage/crypto.py).
    description: Mapped[str | None] = mapped_column(EncryptedText())
    occurred: Mapped[str | None] = mapped_column(EncryptedText())
    place: Mapped[str | None] = mapped_column(EncryptedText())
    latitude: Mapped[float | None] = mapped_column(EncryptedFloat())
    longitude: Mapped[float | None] = mapped_column(EncryptedFloat())
    children: Mapped[str | None] = mapped_column(EncryptedText())
    assigned_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    outcome: Mapped[str | None] = mapped_column(String(32))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Escalation state: what must happen next and when, so a restart loses nothing.
    escalation_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    progress_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    overdue_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # first step beyond
    # The school's word on the outcome: asked | confirmed | disputed (None: nobody to ask).
    confirmation: Mapped[str | None] = mapped_column(String(16))
    confirmation_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Retention (bot/services/retention.py): a case under legal hold is never redacted; a
    # redacted one keeps only what statistics count.
    legal_hold: Mapped[bool] = mapped_column(default=False, server_default="0")
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A report from a public web page: the digest of the secret code its reporter keeps to
    # come back (the code itself is shown once and never stored).
    followup_hash: Mapped[str | None] = mapped_column(String(64))

    school: Mapped[School] = relationship(lazy="selectin")
    area: Mapped[Area] = relationship(lazy="selectin")
    assigned: Mapped[Person | None] = relationship(foreign_keys=[assigned_person_id],
                                                   lazy="selectin")
    attachments: Mapped[list[IncidentAttachment]] = relationship(
        back_populates="incident", lazy="selectin", order_by="IncidentAttachment.id")


class IncidentAttachment(Base):
    """A photo, voice note, video or document that came with a report or a relayed answer."""

    __tablename__ = "incident_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(500))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    size: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))  # reporter | officer
    stored_path: Mapped[str | None] = mapped_column(String(500))  # our copy of a URL's file
    fetch_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    incident: Mapped[Incident] = relationship(back_populates="attachments")


class IncidentEvent(Base):
    """One line of a case's timeline: who did what, when. Statistics are computed from it."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_kind_at", "kind", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    actor_role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON(), default=dict)


class CaseAccess(Base):
    """The access log: every look at a case and every change, by whom, through what, when.

    Written by the case service alone, beside the case's timeline (which tells the case's
    story): a listing, a view, an alert sent and each change each leave one row here."""

    __tablename__ = "case_access"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))  # listed | viewed | alerted | acknowledged …
    via: Mapped[str] = mapped_column(String(16))  # telegram | zalo | cli | console | system


class StatReport(Base):
    """A statistics report to build and send: asked for in the chat, or due at a period's close.

    Stored first (the key makes a period's report to one admin unique, so a restart never
    sends it twice), built by the report clock, sent through the outbox; its files stay
    downloadable by `token` until `expires_at`."""

    __tablename__ = "stat_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    period_kind: Mapped[str] = mapped_column(String(16))
    period_label: Mapped[str] = mapped_column(String(32))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # building since
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleLink(Base):
    """A one-time sign-in link to the web console, sent by /web to one person. Only the
    token's hash is kept: a copied database opens no console."""

    __tablename__ = "console_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A signed-in browser: idle and absolute timeouts, ended by sign-out (or everywhere)."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    person: Mapped[Person] = relationship(lazy="selectin")


class AuditEvent(Base):
    """A change outside a case (directory, invitations, policies, campaigns, sign-ins), with
    who made it, through what and when; cases keep theirs in case_access."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebMessage(Base):
    """What the bot said to one web-chat visitor (the web channel's own "messenger"): the
    page shows it live and again on return; its text goes with the sent messages' texts."""

    __tablename__ = "web_messages"
    __table_args__ = (Index("ix_web_messages_visitor", "visitor", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    visitor: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
