"""Fixtures of the accounts service's integration tests: a migrated database, a session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cascade.accounts.domain.model import Policy
from cascade.accounts.main import create_app, policies
from cascade.accounts.settings import AccountsSettings
from cascade.shared import migrations
from cascade.shared.auth import Role
from cascade.shared.db import make_engine, make_sessionmaker
from cascade.shared.settings import AuthSettings, DatabaseSettings, KafkaSettings
from cascade.shared.testing.tokens import LocalIssuer


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


@dataclass
class Api:
    client: httpx.AsyncClient
    issuer: LocalIssuer

    async def get(self, path: str, **params: str | int) -> httpx.Response:
        """Reads as a collector, the least privileged of the readers."""
        return await self.client.get(path, params=params, headers=self._auth(Role.COLLECTOR))

    async def post(
        self, path: str, body: dict[str, Any] | None = None, role: Role = Role.SUPERVISOR
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self._auth(role))

    def _auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(role)}"}


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Settings `api`'s app takes on top of the tests' own: a test parametrizes this."""
    return {}


@pytest_asyncio.fixture
async def api(
    tmp_path: Path,
    accounts_database: str,
    kafka_bootstrap_servers: str,
    app_overrides: dict[str, Any],
) -> AsyncIterator[Api]:
    """Returns a client of the accounts app on the migrated database (no consumer)."""
    issuer = LocalIssuer.create(tmp_path / "keys")
    settings = AccountsSettings(
        auth=issuer.auth_settings,
        database=DatabaseSettings(url=SecretStr(accounts_database)),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers),
        # Seeded through the handler; the shared broker's core-banking topics are not ours.
        consume_events=False,
        **app_overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Api(client, issuer)


def default_policies() -> dict[str, Policy]:
    """Returns the policies of the default settings."""
    settings = AccountsSettings(auth=AuthSettings(public_key_path="/dev/null"))
    return policies(settings)
