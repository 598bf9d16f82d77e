"""The migrations build exactly the schema the models describe (tables, columns, indexes),
on whichever database the suite runs: a hand-written migration that drifts from the models
fails here, not in a district's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.models import Base


async def test_migrations_match_the_models(engine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert differences == []
