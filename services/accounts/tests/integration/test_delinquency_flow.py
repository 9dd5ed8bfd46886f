"""Core-banking events through the service layer into PostgreSQL: figures and events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed, decoded

from .conftest import default_policies

pytestmark = pytest.mark.integration


async def _feed(
    sessions: async_sessionmaker[AsyncSession], envelopes: Sequence[Envelope]
) -> list[str]:
    by_product = default_policies()
    handler = batch_handler(by_product, by_product["credit_card"])
    async with sessions() as session, session.begin():
        refused = await handler(session, [decoded(e) for e in envelopes])
    return [r.reason for r in refused]


async def _account(
    sessions: async_sessionmaker[AsyncSession], account_id: str
) -> dict[str, object]:
    async with sessions() as session:
        row = (
            (
                await session.execute(
                    text("SELECT * FROM account WHERE account_id = :a"), {"a": account_id}
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def _events(
    sessions: async_sessionmaker[AsyncSession],
) -> list[tuple[str, dict[str, object]]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT event_type, payload FROM outbox_message ORDER BY id")
        )
        return [(r.event_type, json.loads(bytes(r.payload))["data"]) for r in rows]


async def test_three_days_late_then_paid_in_full_is_delinquent_then_cured(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-1")
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", date(2026, 2, 5), 150000)])
    for day in (5, 6, 7, 8):
        await _feed(sessions, [business_day_closed(date(2026, 2, day))])
    late = await _account(sessions, "ACC-1")
    await _feed(
        sessions,
        [bank.payment("PAY-1", date(2026, 2, 9), 150000), business_day_closed(date(2026, 2, 9))],
    )
    cured = await _account(sessions, "ACC-1")
    types = [t for t, _ in await _events(sessions)]

    assert (late["status"], late["days_past_due"], late["bucket"], late["arrears_minor"]) == (
        "delinquent",
        3,
        "1-29",
        150000,
    )
    assert (cured["status"], cured["days_past_due"], cured["arrears_minor"]) == ("current", 0, 0)
    assert types == [
        "cascade.accounts.delinquency-started.v1",
        "cascade.accounts.bucket-changed.v1",
        "cascade.accounts.delinquency-updated.v1",
        "cascade.accounts.delinquency-updated.v1",
        "cascade.accounts.delinquency-updated.v1",
        "cascade.accounts.payment-applied.v1",
        "cascade.accounts.account-cured.v1",
        "cascade.accounts.bucket-changed.v1",
    ]
