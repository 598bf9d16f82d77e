"""Re-encrypt every encrypted value under the first data key (`safeschool keys rotate`).

Works in batches of rows, each its own transaction, table by table: a rotation that is killed
resumes where it stopped, since it only ever looks for values not yet under the first key.
Safe while the bot runs: a value is replaced only if it is still the one that was read (a
concurrent change wins and is already under the first key, because the running bot was
restarted with the new key first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import crypto

BATCH = 500


@dataclass
class Remaining:
    """Values not yet under the first key, per table and column."""

    columns: dict[str, int]

    @property
    def total(self) -> int:
        """All of them."""
        return sum(self.columns.values())


def _raw(table: str, column: str) -> tuple[sa.TableClause, str]:
    key = crypto.KEY_COLUMN.get(table, "id")
    return sa.table(table, sa.column(key, sa.Integer), sa.column(column, sa.Text)), key


def _stale(raw: sa.TableClause, column: str) -> sa.ColumnElement[bool]:
    value = raw.c[column]
    return sa.and_(value.is_not(None), sa.not_(value.startswith(
        crypto.keyring().current_prefix(), autoescape=True)))


async def remaining(engine: AsyncEngine) -> Remaining:
    """How many values are still under another key (or not encrypted at all)."""
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        for table, column, _kind in crypto.ENCRYPTED:
            raw, _key = _raw(table, column)
            counts[f"{table}.{column}"] = (await conn.execute(
                sa.select(sa.func.count()).select_from(raw).where(_stale(raw, column))
            )).scalar_one()
    return Remaining(counts)


async def rotate(engine: AsyncEngine, *, batch: int = BATCH,
                 progress: Callable[[int], None] = lambda _done: None) -> int:
    """Re-encrypt every stale value under the first key; return how many were rewritten."""
    if crypto.keyring().current is None:
        raise crypto.DataKeyError("missing", "SAFESCHOOL_DATA_KEYS is not set")
    done = 0
    for table, column, _kind in crypto.ENCRYPTED:
        raw, key = _raw(table, column)
        last = None
        while True:
            query = (sa.select(raw.c[key], raw.c[column]).where(_stale(raw, column))
                     .order_by(raw.c[key]).limit(batch))
            if last is not None:
                query = query.where(raw.c[key] > last)
            async with engine.begin() as conn:
                rows = (await conn.execute(query)).all()
                if not rows:
                    break
                last = rows[-1][0]
                await conn.execute(
                    raw.update().where(raw.c[key] == sa.bindparam("b_key"),
                                       raw.c[column] == sa.bindparam("b_old"))
                    .values({column: sa.bindparam("b_new")}),
                    [{"b_key": row[0], "b_old": row[1], "b_new": crypto.seal(
                        crypto.unseal(row[1]) if crypto.is_sealed(row[1])
                        else str(row[1]).encode())} for row in rows])
            done += len(rows)
            progress(done)
    return done
