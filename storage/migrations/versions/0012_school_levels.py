"""school levels in one spelling: «Trung học cơ sở», «thcs» and «THCS» are one level

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 21:00:00
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# A snapshot of bot.services.directory.SCHOOL_LEVELS when this ran (migrations do not
# import the application: it changes, they must not).
LEVELS = {"mầm non": "mầm non", "mẫu giáo": "mầm non", "nhà trẻ": "mầm non",
          "tiểu học": "tiểu học", "trung học cơ sở": "THCS", "thcs": "THCS",
          "trung học phổ thông": "THPT", "thpt": "THPT"}


def upgrade() -> None:
    schools = sa.table("schools", sa.column("id", sa.Integer), sa.column("level", sa.String))
    bind = op.get_bind()
    rows = bind.execute(sa.select(schools.c.id, schools.c.level)
                        .where(schools.c.level.is_not(None))).all()
    for school_id, level in rows:  # in Python: SQLite's lower() leaves Vietnamese letters
        clean = " ".join(unicodedata.normalize("NFC", level).split())
        wanted = LEVELS.get(clean.lower(), clean)
        if wanted != level:
            bind.execute(sa.update(schools).where(schools.c.id == school_id)
                         .values(level=wanted))


def downgrade() -> None:
    pass  # the old spellings are not kept; one spelling reads the same to everything
