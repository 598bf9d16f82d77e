"""Walking the area tree (of any depth): up to find who is responsible, down to find scope."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Area


async def ancestors(session: AsyncSession, area_id: int) -> list[int]:
    """Return area_id and the ids of every area above it, nearest first."""
    chain: list[int] = []
    current: int | None = area_id
    while current is not None and current not in chain:
        chain.append(current)
        current = (await session.execute(
            select(Area.parent_id).where(Area.id == current))).scalar_one_or_none()
    return chain


async def subtree(session: AsyncSession, roots: list[int] | set[int]) -> list[int]:
    """Return the given areas and every area below them."""
    if not roots:
        return []
    rows = (await session.execute(select(Area.id, Area.parent_id))).all()
    children: dict[int | None, list[int]] = defaultdict(list)
    for area_id, parent_id in rows:
        children[parent_id].append(area_id)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(children.get(current, []))
    return sorted(found)
