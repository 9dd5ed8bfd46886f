"""What the accounts API tests share: the app with a client, seeding through the handler."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed, decoded

from .conftest import Api, default_policies

DUE = date(2026, 2, 5)
TODAY = date(2026, 2, 17)  # the last business date closed in most tests: 12 days past DUE


async def feed(sessions: async_sessionmaker[AsyncSession], envelopes: Sequence[Envelope]) -> None:
    by_product = default_policies()
    handler = batch_handler(by_product, by_product["credit_card"])
    async with sessions() as session, session.begin():
        assert await handler(session, [decoded(e) for e in envelopes]) == []


async def close_days(
    sessions: async_sessionmaker[AsyncSession], first: date, last: date = TODAY
) -> None:
    day = first
    while day <= last:
        await feed(sessions, [business_day_closed(day)])
        day += timedelta(days=1)


async def late_account(sessions: async_sessionmaker[AsyncSession], account_id: str) -> None:
    """Seeds an account whose 150000 CNY installment due on DUE is unpaid at TODAY (12 DPD)."""
    bank = CoreBanking(account_id)
    await feed(sessions, [bank.opened(), bank.installment("INS-1", DUE, 150000)])
    await close_days(sessions, DUE)


async def post_pause(api: Api, account_id: str, **changes: str) -> httpx.Response:
    """Pauses as a supervisor, from Feb 10 with no end unless `changes` say otherwise."""
    body = {"start_date": "2026-02-10", "reason": "hardship review"} | changes
    return await api.post(f"/v1/accounts/{account_id}/pauses", body)


async def count_rows(sessions: async_sessionmaker[AsyncSession], table: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
