"""Every service's migrations go up, down and up again, and match its table models."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared import migrations
from cascade.shared.catalog import SERVICE_PORTS
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S

pytestmark = pytest.mark.integration


def _differences(connection: Connection, metadata: MetaData) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def _inspect(database_url: str, metadata: MetaData) -> tuple[set[str], list[object]]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            differences = await connection.run_sync(_differences, metadata)
            return tables, differences
    finally:
        await engine.dispose()


# The fields of the row type the outbox writers send, and the outbox columns of those names.
_ROW_TYPE_FIELDS = text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "JOIN pg_type t ON t.typrelid = a.attrelid WHERE t.typname = 'outbox_row' "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)
_OUTBOX_COLUMNS = text(
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 'outbox_message'::regclass AND attnum > 0 AND NOT attisdropped"
)


async def _row_type_and_columns(database_url: str) -> tuple[list[Any], dict[str, str]]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            fields = [tuple(row) for row in await connection.execute(_ROW_TYPE_FIELDS)]
            columns = {row[0]: row[1] for row in await connection.execute(_OUTBOX_COLUMNS)}
            return fields, columns
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
async def test_migrations_stairway_and_model_parity(service: str, database_url: str) -> None:
    package = f"cascade.{service}"
    metadata = importlib.import_module(f"{package}.adapters.orm").metadata

    await asyncio.to_thread(migrations.upgrade, package, database_url)
    tables, differences = await _inspect(database_url, metadata)
    assert {"outbox_message", "inbox_message", "alembic_version"} <= tables
    assert differences == [], "the models and the migrations disagree"
    fields, columns = await _row_type_and_columns(database_url)
    assert len(fields) == 7
    assert fields == [(name, columns.get(name)) for name, _ in fields], "outbox_row drifted"

    await asyncio.to_thread(migrations.downgrade, package, database_url)
    tables, _ = await _inspect(database_url, metadata)
    assert tables <= {"alembic_version"}
    await asyncio.to_thread(migrations.upgrade, package, database_url)


# The last revision of each service before schema_v5 added the inbox's expires_at.
_BEFORE_INBOX_EXPIRY = {
    "accounts": "accounts_0007",
    "cases": "cases_0005",
    "legal": "legal_0005",
    "notifications": "notifications_0005",
}


async def _execute(database_url: str, sql: str) -> list[Any]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", sorted(_BEFORE_INBOX_EXPIRY))
async def test_inbox_rows_that_name_no_expiry_are_kept_the_longest(
    service: str, database_url: str
) -> None:
    package = f"cascade.{service}"
    await asyncio.to_thread(
        migrations.upgrade, package, database_url, _BEFORE_INBOX_EXPIRY[service]
    )
    insert = "INSERT INTO inbox_message (consumer_group, event_id) VALUES ('g', '{}')"
    await _execute(database_url, insert.format("before-the-column"))
    await asyncio.to_thread(migrations.upgrade, package, database_url)
    await _execute(database_url, insert.format("from-the-previous-release"))

    keeps = dict(
        await _execute(
            database_url,
            "SELECT event_id, extract(epoch FROM expires_at - processed_at) FROM inbox_message",
        )
    )

    assert keeps["from-the-previous-release"] == INBOX_KEEP_UNLISTED_S
    # Counted from the migration, after the row was recorded.
    assert keeps["before-the-column"] > INBOX_KEEP_UNLISTED_S
