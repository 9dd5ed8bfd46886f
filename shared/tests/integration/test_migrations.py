"""Every service's migrations go up, down and up again, and match its table models."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared import migrations
from cascade.shared.catalog import SERVICE_PORTS

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


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
async def test_migrations_stairway_and_model_parity(service: str, database_url: str) -> None:
    package = f"cascade.{service}"
    metadata = importlib.import_module(f"{package}.adapters.orm").metadata

    await asyncio.to_thread(migrations.upgrade, package, database_url)
    tables, differences = await _inspect(database_url, metadata)
    assert {"outbox_message", "inbox_message", "alembic_version"} <= tables
    assert differences == [], "the models and the migrations disagree"

    await asyncio.to_thread(migrations.downgrade, package, database_url)
    tables, _ = await _inspect(database_url, metadata)
    assert tables <= {"alembic_version"}
    await asyncio.to_thread(migrations.upgrade, package, database_url)
