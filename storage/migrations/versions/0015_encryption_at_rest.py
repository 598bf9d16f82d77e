"""encrypt what can describe a case or a child (storage/crypto.py): the columns become text
holding tokens, and every existing value is encrypted under the first of SAFESCHOOL_DATA_KEYS

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 04:40:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from storage import crypto

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BATCH = 500


def _as_text(value: object) -> str:
    """A stored value as the text its column type decodes (JSON documents as JSON)."""
    if isinstance(value, dict | list):  # PostgreSQL's JSON column, read before conversion
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float | int):
        return repr(float(value))
    return str(value)


def upgrade() -> None:
    bind = op.get_bind()
    by_table: dict[str, list[str]] = {}
    for table, column, _kind in crypto.ENCRYPTED:
        by_table.setdefault(table, []).append(column)
    for table, columns in by_table.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                if bind.dialect.name == "postgresql":
                    batch.alter_column(column, type_=sa.Text(),
                                       postgresql_using=f"{column}::text")
                else:
                    batch.alter_column(column, type_=sa.Text())
    for table, column, _kind in crypto.ENCRYPTED:
        key = crypto.KEY_COLUMN.get(table, "id")
        raw = sa.table(table, sa.column(key, sa.Integer), sa.column(column, sa.Text))
        last = 0
        while True:
            rows = bind.execute(
                sa.select(raw.c[key], raw.c[column])
                .where(raw.c[key] > last, raw.c[column].is_not(None))
                .order_by(raw.c[key]).limit(BATCH)).all()
            if not rows:
                break
            last = rows[-1][0]
            plain = [(row[0], _as_text(row[1])) for row in rows
                     if not crypto.is_sealed(str(row[1]))]
            if plain:  # without a key this raises: the data stays as it was, readable
                bind.execute(raw.update().where(raw.c[key] == sa.bindparam("b_id"))
                             .values({column: sa.bindparam("b_value")}),
                             [{"b_id": i, "b_value": crypto.seal(text.encode())}
                              for i, text in plain])


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, _kind in crypto.ENCRYPTED:
        key = crypto.KEY_COLUMN.get(table, "id")
        raw = sa.table(table, sa.column(key, sa.Integer), sa.column(column, sa.Text))
        rows = bind.execute(sa.select(raw.c[key], raw.c[column])
                            .where(raw.c[column].is_not(None))).all()
        for row_id, value in rows:
            if crypto.is_sealed(value):
                bind.execute(raw.update().where(raw.c[key] == row_id)
                             .values({column: crypto.unseal(value).decode()}))
    old = {"description": sa.Text(), "occurred": sa.String(64), "place": sa.String(500),
           "latitude": sa.Float(), "longitude": sa.Float(), "children": sa.String(200),
           "reporter_name": sa.String(255), "reporter_phone": sa.String(32)}
    for table, column, _kind in crypto.ENCRYPTED:
        with op.batch_alter_table(table) as batch:
            type_ = old.get(column, sa.JSON())
            if bind.dialect.name == "postgresql" and not isinstance(type_, sa.String):
                batch.alter_column(column, type_=type_, postgresql_using=(
                    f"{column}::json" if isinstance(type_, sa.JSON) else
                    f"{column}::double precision"))
            else:
                batch.alter_column(column, type_=type_)
