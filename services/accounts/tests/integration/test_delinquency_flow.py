"""Core-banking events through the service layer into PostgreSQL: figures and events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.accounts.service_layer.pause_actions import pause_account
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
    return [r.reason for r in refused or ()]


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
) -> list[tuple[str, dict[str, Any]]]:
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


async def test_a_repeated_or_older_business_date_is_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-2")
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", date(2026, 2, 5), 1000)])
    await _feed(sessions, [business_day_closed(date(2026, 2, 7))])
    written = len(await _events(sessions))
    await _feed(sessions, [business_day_closed(date(2026, 2, 7))])
    await _feed(sessions, [business_day_closed(date(2026, 2, 6))])

    assert written == 3  # started, bucket changed, updated
    assert len(await _events(sessions)) == written
    assert (await _account(sessions, "ACC-2"))["days_past_due"] == 2


async def test_a_future_dated_payment_counts_from_its_value_date(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-3")
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", date(2026, 2, 5), 1000)])
    await _feed(sessions, [bank.payment("PAY-1", date(2026, 2, 8), 1000)])
    await _feed(sessions, [business_day_closed(date(2026, 2, 7))])
    before_value_date = await _account(sessions, "ACC-3")
    await _feed(sessions, [business_day_closed(date(2026, 2, 8))])
    after = await _account(sessions, "ACC-3")
    types = [t for t, _ in await _events(sessions)]

    assert (before_value_date["status"], before_value_date["days_past_due"]) == ("delinquent", 2)
    assert (after["status"], after["arrears_minor"]) == ("current", 0)
    assert types[-3:] == [
        "cascade.accounts.payment-applied.v1",
        "cascade.accounts.account-cured.v1",
        "cascade.accounts.bucket-changed.v1",
    ]


async def test_events_before_the_opening_are_held_and_applied_when_it_opens(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-4")
    await _feed(sessions, [business_day_closed(date(2026, 2, 10))])
    early = [
        bank.installment("INS-1", date(2026, 2, 5), 1000),
        bank.payment("PAY-1", date(2026, 2, 6), 400),
        bank.installment("INS-2", date(2026, 2, 9), 500, currency="USD"),
    ]
    refused = await _feed(sessions, early)
    async with sessions() as session, session.begin():
        held = await session.scalar(text("SELECT count(*) FROM held_event"))
        # As the consumer records them, in the transaction that holds them.
        await session.execute(
            text("INSERT INTO inbox_message (consumer_group, event_id) VALUES ('accounts', :id)"),
            [{"id": envelope.id} for envelope in early],
        )
    refused_at_opening = await _feed(sessions, [bank.opened()])
    async with sessions() as session:
        remembered = set(await session.scalars(text("SELECT event_id FROM inbox_message")))
    opened = await _account(sessions, "ACC-4")
    async with sessions() as session:
        letters = (
            await session.execute(
                text("SELECT topic, headers FROM outbox_message WHERE headers IS NOT NULL")
            )
        ).all()

    assert (refused, held) == ([], 3)
    # Checked once the currency is known, and dead-lettered in that same transaction: the
    # record was committed long ago, so nothing else would bring it back.
    assert refused_at_opening == []
    assert [(topic, json.loads(headers)["dlt-reason"]) for topic, headers in letters] == [
        ("accounts.dead-letters.v1", "currency_mismatch")
    ]
    # The refused one leaves the inbox with its dead letter, so that a replay applies it.
    assert remembered == {early[0].id, early[1].id}
    assert (opened["status"], opened["days_past_due"], opened["arrears_minor"]) == (
        "delinquent",
        5,
        600,
    )


async def test_a_pause_with_an_end_date_is_announced_over_at_the_close_before_it_ends(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-5")
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", date(2026, 2, 5), 1000)])
    await _feed(sessions, [business_day_closed(date(2026, 2, 6))])
    async with sessions() as session, session.begin():
        await pause_account(
            session,
            "ACC-5",
            start_date=date(2026, 2, 7),
            end_date=date(2026, 2, 10),
            reason="dispute",
            actor="supervisor-1",
            policies=default_policies(),
        )
    for day in (7, 8, 9, 10):
        await _feed(sessions, [business_day_closed(date(2026, 2, day))])
    after = await _account(sessions, "ACC-5")
    pause_events = [t for t, _ in await _events(sessions) if ".pause-" in t]

    assert after["days_past_due"] == 2  # 5 days late, 3 of them paused (7th, 8th, 9th)
    assert pause_events == [
        "cascade.accounts.pause-started.v1",
        "cascade.accounts.pause-ended.v1",
    ]


async def test_several_closes_in_one_batch_are_applied_in_date_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bank = CoreBanking("ACC-6")
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", date(2026, 2, 5), 1000)])
    # A backlog read in one fetch: three dates, out of order, in one transaction.
    closes = [business_day_closed(date(2026, 2, d)) for d in (8, 6, 7)]
    await _feed(sessions, closes)
    account = await _account(sessions, "ACC-6")
    updates = [d for t, d in await _events(sessions) if t.endswith("delinquency-updated.v1")]

    assert (account["days_past_due"], account["as_of_date"]) == (3, date(2026, 2, 8))
    assert [u["delinquency"]["days_past_due"] for u in updates] == [1, 2, 3]
