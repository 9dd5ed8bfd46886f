"""The idempotent consumer's memory: which event ids a consumer group has applied."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, text
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
    result = await session.execute(
        text(
            f"INSERT INTO {table.name} (consumer_group, event_id) "
            "SELECT :group, unnest(CAST(:ids AS text[])) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        ),
        {"group": consumer_group, "ids": list(event_ids)},
    )
    return {row[0] for row in result}


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
