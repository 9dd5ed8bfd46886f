"""Fixtures of the accounts service's integration tests: a migrated database, a session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cascade.accounts.domain.model import Policy
from cascade.accounts.main import policies
from cascade.accounts.settings import AccountsSettings
from cascade.shared import migrations
from cascade.shared.db import make_engine, make_sessionmaker
from cascade.shared.settings import AuthSettings, DatabaseSettings


@pytest_asyncio.fixture
async def accounts_database(database_url: str) -> str:
    """Returns the URL of a fresh database with the accounts migrations applied."""
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", database_url)
    return database_url


@pytest_asyncio.fixture
async def sessions(accounts_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Returns sessions on the migrated accounts database."""
    engine: AsyncEngine = make_engine(DatabaseSettings(url=SecretStr(accounts_database)))
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


def default_policies() -> dict[str, Policy]:
    """Returns the policies of the default settings."""
    settings = AccountsSettings(auth=AuthSettings(public_key_path="/dev/null"))
    return policies(settings)
