"""Every outbox row is listed as pending by the database, whoever inserts it (schema_v3).

A writer of the previous release keeps inserting outbox rows during a rolling upgrade; so
do set-based statements such as the accounts close. The trigger lists each row for the
relay, and the migration lists the rows that were unpublished before it ran.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared import migrations

pytestmark = pytest.mark.integration

PACKAGE = "cascade.cases"
BEFORE_PENDING = "cases_0003"  # schema_v2: rows marked with published_at


def _insert(event_id: str, published: bool = False) -> str:
    """A plain INSERT, as any writer (or an older release) writes an outbox row."""
    published_at = ", published_at" if published else ""
    now = ", now()" if published else ""
    return (
        f"INSERT INTO outbox_message (event_id, event_type, topic, message_key, key_slot, "  # noqa: S608 - test constants
        f"payload{published_at}) VALUES ('{event_id}', 't.v1', 'topic', 'ACC-1', 7, "
        f"'\\x7b7d'{now})"
    )


async def _rows(database_url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


async def _pending_event_ids(database_url: str) -> set[object]:
    rows = await _rows(
        database_url,
        "SELECT o.event_id FROM outbox_pending p JOIN outbox_message o USING (id)",
    )
    return {row[0] for row in rows}


async def test_the_upgrade_lists_unpublished_rows_and_every_later_insert(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, PACKAGE, database_url, BEFORE_PENDING)
    for statement in (_insert("old-unpublished"), _insert("old-published", published=True)):
        await _rows(database_url, statement + " RETURNING id")

    await asyncio.to_thread(migrations.upgrade, PACKAGE, database_url)
    assert await _pending_event_ids(database_url) == {"old-unpublished"}

    await _rows(database_url, _insert("written-after") + " RETURNING id")
    await _rows(
        database_url,
        "INSERT INTO outbox_message (event_id, event_type, topic, message_key, key_slot, "
        "payload) SELECT 'set-' || n, 't.v1', 'topic', 'ACC-' || n, 1, '\\x7b7d' "
        "FROM generate_series(1, 3) n RETURNING id",
    )
    assert await _pending_event_ids(database_url) == {
        "old-unpublished",
        "written-after",
        "set-1",
        "set-2",
        "set-3",
    }


async def test_the_downgrade_marks_what_is_no_longer_pending_as_published(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, PACKAGE, database_url)
    for event_id in ("published", "unpublished"):
        await _rows(database_url, _insert(event_id) + " RETURNING id")
    await _rows(
        database_url,
        "DELETE FROM outbox_pending WHERE id IN "
        "(SELECT id FROM outbox_message WHERE event_id = 'published') RETURNING id",
    )

    await asyncio.to_thread(migrations.downgrade, PACKAGE, database_url, BEFORE_PENDING)
    rows = await _rows(
        database_url,
        "SELECT event_id, published_at IS NOT NULL FROM outbox_message ORDER BY event_id",
    )
    assert rows == [("published", True), ("unpublished", False)]
    await _rows(database_url, _insert("after-downgrade") + " RETURNING id")  # no trigger left
