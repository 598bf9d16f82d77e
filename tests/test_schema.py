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


async def test_the_upgrade_gives_existing_school_levels_one_spelling(tmp_path) -> None:
    from sqlalchemy import text

    from storage import db

    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await db.upgrade(engine, "0011")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO areas (id, code, name) VALUES (1, 'HX', 'X')"))
            for n, level in enumerate(["Trung học cơ sở", "thcs", " Tiểu  học ", "THPT",
                                       "Trường chuyên", None], start=1):
                await conn.execute(text(
                    "INSERT INTO schools (id, code, name, area_id, level, parent_code) "
                    "VALUES (:id, :code, 'T', 1, :level, :pc)"),
                    {"id": n, "code": f"S{n}", "level": level, "pc": f"P{n}"})
        await db.upgrade(engine)
        async with engine.connect() as conn:
            levels = [row[0] for row in await conn.execute(
                text("SELECT level FROM schools ORDER BY id"))]
        assert levels == ["THCS", "THCS", "tiểu học", "THPT", "Trường chuyên", None]
    finally:
        await engine.dispose()
