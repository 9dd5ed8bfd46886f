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


async def _periods(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, tuple[date, date | None]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT account_id, entered_on, left_on FROM bucket_history")
        )
        return {row.account_id: (row.entered_on, row.left_on) for row in rows}


async def test_the_upgrade_ends_the_open_periods_of_closed_accounts_only(
    accounts_database: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    closures = {"ACC-CLOSED": date(2026, 2, 12), "ACC-EARLY": date(2026, 2, 1)}
    closures |= {"ACC-ENDED": date(2026, 2, 12)}
    for account in [*closures, "ACC-OPEN"]:
        await late_account(sessions, account)
    await feed(sessions, [CoreBanking(a).closed(d, "charged_off") for a, d in closures.items()])
    async with sessions() as session, session.begin():  # as the previous release left them
        await session.execute(
            text(
                "UPDATE bucket_history SET left_on = CASE account_id WHEN 'ACC-ENDED' "
                "THEN DATE '2026-02-10' END"
            )
        )

    await asyncio.to_thread(
        migrations.downgrade, "cascade.accounts", accounts_database, "accounts_0006"
    )
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", accounts_database)

    periods = await _periods(sessions)
    early_entered = periods["ACC-EARLY"][0]

    assert periods["ACC-CLOSED"][1] == date(2026, 2, 12)
    assert early_entered > closures["ACC-EARLY"]
    assert periods["ACC-EARLY"][1] == early_entered  # never before the period began
    assert periods["ACC-ENDED"][1] == date(2026, 2, 10)  # an ended period is left as it was
    assert periods["ACC-OPEN"][1] is None
