"""The session's PostgreSQL through cascade.shared.db: commit and rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cascade.shared.db import make_engine, make_sessionmaker, transaction
from cascade.shared.settings import DatabaseSettings

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


@pytest_asyncio.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(DatabaseSettings(url=SecretStr(database_url)))
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE debtor (id int PRIMARY KEY, name text)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_committed_row_can_be_read_back(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)

    async with transaction(sessions) as session:
        await session.execute(text("INSERT INTO debtor VALUES (1, 'Ada')"))
    async with transaction(sessions) as session:
        name = await session.scalar(text("SELECT name FROM debtor WHERE id = 1"))

    assert name == "Ada"


async def test_a_rolled_back_transaction_leaves_no_row(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)

    async def insert_then_fail() -> None:
        async with transaction(sessions) as session:
            await session.execute(text("INSERT INTO debtor VALUES (2, 'Grace')"))
            raise Boom

    with pytest.raises(Boom):
        await insert_then_fail()
    async with transaction(sessions) as session:
        count = await session.scalar(text("SELECT count(*) FROM debtor"))

    assert count == 0


async def test_each_test_gets_its_own_empty_database(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=SecretStr(database_url)))
    try:
        async with engine.connect() as connection:
            tables = await connection.scalar(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            )
    finally:
        await engine.dispose()

    assert tables == 0
