"""statistics: outreach kept as awareness messages are sent

A province-wide year with all of its 5,000,000 parents sent an awareness message took 40 s,
all of it counting the distinct people the sent messages reached (per row and role). The
outreach roll-up (bot/services/outreach.py) now keeps, per person and reporting year, the
months that reached them (reach_years) and, per period, area and role, how many people a
period reached (reach_counts); reach_state says how far it has read. The tables start empty:
the first roll-up reads every sent awareness message once.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reach_years",
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cutoff", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("year", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("person_id", "cutoff", "year", name=op.f("pk_reach_years")),
    )
    op.create_table(
        "reach_counts",
        sa.Column("cutoff", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("area_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("cutoff", "period", "area_id", "role",
                                name=op.f("pk_reach_counts")),
    )
    op.create_table(
        "reach_state",
        sa.Column("cutoff", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("rolled_until", sa.DateTime(), nullable=True),
        sa.Column("last_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("cutoff", name=op.f("pk_reach_state")),
    )


def downgrade() -> None:
    op.drop_table("reach_state")
    op.drop_table("reach_counts")
    op.drop_table("reach_years")
