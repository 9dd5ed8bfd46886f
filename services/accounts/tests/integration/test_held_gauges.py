"""The held-event gauges: an alert can see events waiting for an opening that never came."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.testing.corebanking import CoreBanking

from .api_support import feed
from .conftest import Api

pytestmark = pytest.mark.integration

COUNT = "cascade_accounts_held_events"
OLDEST = "cascade_accounts_held_oldest_age_seconds"
MEASURED = "cascade_accounts_held_measured_timestamp_seconds"
Gauges = dict[str, float]


async def _gauges(api: Api) -> Gauges:
    response = await api.client.get("/metrics")
    response.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name in (COUNT, OLDEST, MEASURED)
    }


async def _backdate_held(sessions: async_sessionmaker[AsyncSession], seconds: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE held_event SET held_at = now() - make_interval(secs => :s)"),
            {"s": seconds},
        )


async def _wait_for(api: Api, shown: Callable[[Gauges], bool], what: str) -> Gauges:
    async def measured() -> bool:
        return shown(await _gauges(api))

    await wait_until_async(measured, 10.0, what)
    return await _gauges(api)


@pytest.mark.parametrize("app_overrides", [{"held_gauges_every_s": 0.05}])
async def test_held_events_show_until_their_account_opens(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bank = CoreBanking("ACC-HELD")
    installment = bank.installment("INS-1", date(2026, 2, 5), 1000)
    await feed(sessions, [installment, bank.payment("PAY-1", date(2026, 2, 6), 500)])
    await _backdate_held(sessions, 60)
    # Both at once: a measurement between the feed and the backdating shows a fresh age.
    waiting = await _wait_for(
        api, lambda g: g.get(COUNT) == 2 and g.get(OLDEST, 0) >= 60, "two held events to show"
    )

    await feed(sessions, [bank.opened()])
    after = await _wait_for(api, lambda g: g.get(COUNT) == 0, "the held events to be applied")

    assert 60 <= waiting[OLDEST] < 120
    assert after[OLDEST] == 0
    assert after[MEASURED] >= waiting[MEASURED] > 0
