"""an anonymous report's link to its reporter is sealed with SAFESCHOOL_RELAY_KEY: the case
keeps the person and account encrypted under that key and a keyed hash to find one's own
cases; the plain ids, and the traces that named the reporter, are removed

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage import crypto

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("reporter_seal", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reporter_tag", sa.String(40), nullable=True))
        batch.create_index("ix_incidents_reporter_tag", ["reporter_tag"])
    bind = op.get_bind()
    incidents = sa.table("incidents", sa.column("id", sa.Integer),
                         sa.column("anonymous", sa.Boolean),
                         sa.column("reporter_person_id", sa.Integer),
                         sa.column("reporter_account_id", sa.Integer),
                         sa.column("reporter_seal", sa.Text),
                         sa.column("reporter_tag", sa.String))
    events = sa.table("incident_events", sa.column("incident_id", sa.Integer),
                      sa.column("actor_person_id", sa.Integer))
    access = sa.table("case_access", sa.column("incident_id", sa.Integer),
                      sa.column("person_id", sa.Integer))
    outbox = sa.table("outbox", sa.column("id", sa.Integer),
                      sa.column("idempotency_key", sa.String))
    rows = bind.execute(sa.select(
        incidents.c.id, incidents.c.reporter_person_id, incidents.c.reporter_account_id)
        .where(incidents.c.anonymous.is_(True), incidents.c.reporter_person_id.is_not(None))
    ).all()
    relay = crypto.relay()
    for case_id, person_id, account_id in rows:
        bind.execute(incidents.update().where(incidents.c.id == case_id).values(
            reporter_seal=relay.seal(person_id, account_id),
            reporter_tag=relay.tag("reporter", person_id),
            reporter_person_id=None, reporter_account_id=None))
        bind.execute(events.update().where(events.c.incident_id == case_id,
                                           events.c.actor_person_id == person_id)
                     .values(actor_person_id=None))
        bind.execute(access.update().where(access.c.incident_id == case_id,
                                           access.c.person_id == person_id)
                     .values(person_id=None))
        for row_id, key in bind.execute(sa.select(outbox.c.id, outbox.c.idempotency_key).where(
                outbox.c.idempotency_key.like(f"reporter:{case_id}:%"))).all():
            event = key.split(":", 2)[2]
            bind.execute(outbox.update().where(outbox.c.id == row_id).values(
                idempotency_key=f"reporter:{relay.tag('notice', case_id, event)}"))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_reporter_tag")
        batch.drop_column("reporter_tag")
        batch.drop_column("reporter_seal")
