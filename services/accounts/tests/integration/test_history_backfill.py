"""accounts_0007 ends the open bucket periods of accounts closed before the release."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared import migrations
from cascade.shared.testing.corebanking import CoreBanking

from .api_support import feed, late_account

pytestmark = pytest.mark.integration


async def _periods(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, date | None]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT account_id, left_on FROM bucket_history ORDER BY account_id")
        )
        return [(row.account_id, row.left_on) for row in rows]


async def test_the_upgrade_ends_the_open_periods_of_closed_accounts_only(
    accounts_database: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-CLOSED")
    await late_account(sessions, "ACC-OPEN")
    await feed(sessions, [CoreBanking("ACC-CLOSED").closed(date(2026, 2, 12), "charged_off")])
    async with sessions() as session, session.begin():  # as the previous release left them
        await session.execute(text("UPDATE bucket_history SET left_on = NULL"))

    await asyncio.to_thread(migrations.downgrade, "cascade.accounts", accounts_database, "-1")
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", accounts_database)

    assert await _periods(sessions) == [("ACC-CLOSED", date(2026, 2, 12)), ("ACC-OPEN", None)]
