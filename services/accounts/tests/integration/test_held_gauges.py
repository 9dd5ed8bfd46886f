"""The held-event gauges: an alert can see events waiting for an opening that never came."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.accounts.main import create_app
from cascade.accounts.settings import AccountsSettings
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.settings import DatabaseSettings, KafkaSettings
from cascade.shared.testing.corebanking import CoreBanking, decoded
from cascade.shared.testing.tokens import LocalIssuer

from .conftest import default_policies

pytestmark = pytest.mark.integration

COUNT, OLDEST = "cascade_accounts_held_events", "cascade_accounts_held_oldest_age_seconds"


@pytest_asyncio.fixture
async def metrics_client(
    tmp_path: Path, accounts_database: str, kafka_bootstrap_servers: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Returns a client of an accounts app that measures the held events every 50 ms."""
    settings = AccountsSettings(
        auth=LocalIssuer.create(tmp_path / "keys").auth_settings,
        database=DatabaseSettings(url=SecretStr(accounts_database)),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers),
        consume_events=False,
        held_gauges_every_s=0.05,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def _gauges(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    response.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name in (COUNT, OLDEST)
    }


async def _feed(sessions: async_sessionmaker[AsyncSession], envelopes: Sequence[Envelope]) -> None:
    by_product = default_policies()
    async with sessions() as session, session.begin():
        await batch_handler(by_product, by_product["credit_card"])(
            session, [decoded(e) for e in envelopes]
        )


async def _wait_for(client: httpx.AsyncClient, count: float, what: str) -> dict[str, float]:
    async def shown() -> bool:
        return (await _gauges(client)).get(COUNT) == count

    await wait_until_async(shown, 10.0, what)
    return await _gauges(client)


async def test_held_events_show_until_their_account_opens(
    metrics_client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await _wait_for(metrics_client, 0, "the gauges to be measured")
    bank = CoreBanking("ACC-HELD")
    await _feed(
        sessions,
        [
            bank.installment("INS-1", date(2026, 2, 5), 1000),
            bank.payment("PAY-1", date(2026, 2, 6), 500),
        ],
    )
    async with sessions() as session, session.begin():  # as if held a minute ago
        await session.execute(text("UPDATE held_event SET held_at = now() - interval '60 s'"))

    waiting = await _wait_for(metrics_client, 2, "the two held events to show")
    await _feed(sessions, [bank.opened()])
    after = await _wait_for(metrics_client, 0, "the held events to be applied")

    assert before[OLDEST] == 0
    assert waiting[OLDEST] >= 60
    assert after[OLDEST] == 0
