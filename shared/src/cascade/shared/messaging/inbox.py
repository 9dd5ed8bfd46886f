"""The idempotent consumer's memory: which event ids a consumer group has applied."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_new(
    session: AsyncSession, table: Table, consumer_group: str, event_ids: Sequence[str]
) -> set[str]:
    """Records `event_ids` for the group in the caller's transaction; returns the new ones.

    One statement for the whole batch: a duplicate id conflicts and is left out of the
    result, so its effects are not applied a second time (Eventuate's received_messages).
    """
    if not event_ids:
        return set()
    new_ids = await session.scalar(
        _claim(table.name),
        {"group": consumer_group, "ids": list(event_ids)},
    )
    return set(new_ids or ())


async def forget(
    session: AsyncSession, table: Table, consumer_group: str, event_ids: Sequence[str]
) -> None:
    """Removes `event_ids` from the group's inbox in the caller's transaction."""
    await session.execute(
        text(
            f"DELETE FROM {table.name} WHERE consumer_group = :group "  # noqa: S608
            "AND event_id = ANY(CAST(:ids AS text[]))"
        ),
        {"group": consumer_group, "ids": list(event_ids)},
    )


@cache
def _claim(table_name: str) -> TextClause:
    # The new ids come back as one array (decoded by asyncpg in C), not as a row each.
    return text(
        f"WITH new AS (INSERT INTO {table_name} (consumer_group, event_id) "  # noqa: S608
        "SELECT :group, unnest(CAST(:ids AS text[])) "
        "ON CONFLICT DO NOTHING RETURNING event_id) SELECT array_agg(event_id) FROM new"
    )
