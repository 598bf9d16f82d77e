"""statistics: each school's parents counted as they register, by the database

A province-wide report counted 5,000,000 parent registrations per school for every report
(1.0–1.2 s on PostgreSQL, the report's critical path). school_parents keeps each school's
total, maintained by triggers on role_assignments whatever inserts, deletes or moves a
parent's role (registration, the directory, erasure, a bulk load); the report takes off it
the registrations made since the period's end, read through a (role, created_at, school_id)
index, which replaces 0019's.

The triggers are created before the totals are filled, in the same transaction: the DDL
locks role_assignments, so no registration falls between the two.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_PARENT = "{row}.role = 'parent' AND {row}.school_id IS NOT NULL"
_ADD = ("INSERT INTO school_parents (school_id, parents) VALUES ({row}.school_id, 1) "
        "ON CONFLICT (school_id) DO UPDATE SET parents = school_parents.parents + 1")
_TAKE = "UPDATE school_parents SET parents = parents - 1 WHERE school_id = {row}.school_id"

_SQLITE_TRIGGERS = {
    "role_assignments_parents_insert": ("AFTER INSERT", "NEW", _ADD),
    "role_assignments_parents_delete": ("AFTER DELETE", "OLD", _TAKE),
    "role_assignments_parents_update_old": ("AFTER UPDATE OF role, school_id", "OLD", _TAKE),
    "role_assignments_parents_update_new": ("AFTER UPDATE OF role, school_id", "NEW", _ADD),
}


def upgrade() -> None:
    op.create_table(
        "school_parents",
        sa.Column("school_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parents", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("school_id", name=op.f("pk_school_parents")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION school_parents_count() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('DELETE', 'UPDATE') THEN
                    IF {_PARENT.format(row="OLD")} THEN
                        {_TAKE.format(row="OLD")};
                    END IF;
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    IF {_PARENT.format(row="NEW")} THEN
                        {_ADD.format(row="NEW")};
                    END IF;
                END IF;
                RETURN NULL;
            END $$""")
        op.execute("CREATE TRIGGER role_assignments_parents AFTER INSERT OR DELETE OR UPDATE "
                   "OF role, school_id ON role_assignments FOR EACH ROW "
                   "EXECUTE FUNCTION school_parents_count()")
    else:
        for name, (when, row, action) in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} ON role_assignments "
                       f"WHEN {_PARENT.format(row=row)} "
                       f"BEGIN {action.format(row=row)}; END")
    op.execute("INSERT INTO school_parents (school_id, parents) "
               "SELECT school_id, count(*) FROM role_assignments "
               "WHERE role = 'parent' AND school_id IS NOT NULL GROUP BY school_id")
    op.create_index("ix_role_assignments_since", "role_assignments",
                    ["role", "created_at", "school_id"])
    op.drop_index("ix_role_assignments_school_people", table_name="role_assignments")


def downgrade() -> None:
    op.create_index("ix_role_assignments_school_people", "role_assignments",
                    ["role", "school_id", "person_id", "created_at"])
    op.drop_index("ix_role_assignments_since", table_name="role_assignments")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER role_assignments_parents ON role_assignments")
        op.execute("DROP FUNCTION school_parents_count()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("school_parents")
