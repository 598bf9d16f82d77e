"""case access log

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_access",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_case_access_incident_id_incidents")),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"],
                                name=op.f("fk_case_access_person_id_people")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_access")),
    )
    with op.batch_alter_table("case_access", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_access_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_access_incident_id"), ["incident_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_case_access_person_id"), ["person_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_access", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_access_person_id"))
        batch_op.drop_index(batch_op.f("ix_case_access_incident_id"))
        batch_op.drop_index(batch_op.f("ix_case_access_at"))
    op.drop_table("case_access")
