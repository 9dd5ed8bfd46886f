"""The set-based close agrees with the domain's rules, account by account.

The close ages most accounts in SQL (`adapters.ageing`) and reassesses a few in Python
(`domain.model.assess`); both must give the figures the domain gives from the facts.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.adapters import repository
from cascade.accounts.domain.model import assess
from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.accounts.main import policies
from cascade.accounts.service_layer.pause_actions import pause_account
from cascade.accounts.settings import AccountsSettings, ToleranceSetting
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.settings import AuthSettings
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed, decoded

pytestmark = pytest.mark.integration

START = date(2026, 3, 1)
DAYS = 40


def _history(rng: random.Random, account_id: str) -> list[tuple[date, Envelope]]:
    """Returns (day it arrives, event) for one random account."""
    bank = CoreBanking(account_id, product=rng.choice(["credit_card", "personal_loan"]))
    arrivals = [(START - timedelta(days=1), bank.opened(START - timedelta(days=30)))]
    for n in range(rng.randint(1, 4)):
        due = START + timedelta(days=rng.randint(-10, DAYS))
        arrives = (
            due - timedelta(days=rng.randint(0, 5))
            if rng.random() < 0.9
            else due + timedelta(days=3)
        )
        arrivals.append(
            (arrives, bank.installment(f"INS-{n}", due, rng.choice([500, 10_000, 150_000])))
        )
    for n in range(rng.randint(0, 4)):
        value = START + timedelta(days=rng.randint(-5, DAYS))
        arrives = value + timedelta(days=rng.choice([0, 0, 0, 2, -3]))  # late, or future-dated
        arrivals.append(
            (arrives, bank.payment(f"PAY-{n}", value, rng.choice([400, 5_000, 150_000])))
        )
        if rng.random() < 0.25:
            reversed_on = value + timedelta(days=rng.randint(0, 6))
            arrivals.append(
                (
                    reversed_on - timedelta(days=rng.randint(0, 8)),
                    bank.reversal(f"PAY-{n}", reversed_on),
                )
            )
    return arrivals


async def test_every_aged_account_has_the_figures_the_domain_computes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = AccountsSettings(
        auth=AuthSettings(public_key_path="/dev/null"),
        tolerances=[ToleranceSetting(product="personal_loan", currency="CNY", tolerance_minor=600)],
    )
    by_product = policies(settings)
    handler = batch_handler(by_product, by_product["credit_card"])
    rng = random.Random(7)
    arrivals = sorted(
        (item for n in range(120) for item in _history(rng, f"ACC-{n:04d}")), key=lambda a: a[0]
    )
    first_day = min(day for day, _ in arrivals)
    day, pending = first_day, list(arrivals)
    while day <= START + timedelta(days=DAYS):
        todays = [decoded(e) for d, e in pending if d <= day]
        pending = [(d, e) for d, e in pending if d > day]
        async with sessions() as session, session.begin():
            await handler(session, todays)
        if day == START + timedelta(days=12):
            for n in range(0, 120, 7):  # some pauses, a few open-ended, set mid-stream
                end = None if n % 3 else day + timedelta(days=5)
                async with sessions() as session, session.begin():
                    await pause_account(
                        session,
                        f"ACC-{n:04d}",
                        start_date=day - timedelta(days=4),
                        end_date=end,
                        reason="hardship",
                        actor="t",
                        policies=by_product,
                    )
        async with sessions() as session, session.begin():
            await handler(session, [decoded(business_day_closed(day))])
        day += timedelta(days=1)
    last = day - timedelta(days=1)

    mismatches, delinquent = [], 0
    async with sessions() as session:
        ids = [r[0] for r in await session.execute(text("SELECT account_id FROM account"))]
        accounts = await repository.load(session, ids)
    for account in accounts.values():
        assert account.profile is not None
        expected = assess(
            account.installments.values(),
            account.payments.values(),
            account.reversals,
            account.pauses.values(),
            as_of=last,
            currency=account.profile.currency,
            policy=by_product[account.profile.product],
        )
        delinquent += expected.status == "delinquent"
        stored = account.state
        if (
            stored.status,
            stored.days_past_due,
            stored.arrears_minor,
            stored.bucket,
            stored.oldest_unpaid_due_date,
        ) != (
            expected.status,
            expected.days_past_due,
            expected.arrears_minor,
            expected.bucket,
            expected.oldest_unpaid_due_date,
        ):
            mismatches.append((account.account_id, stored, expected))

    assert len(accounts) == 120
    assert delinquent > 10  # the histories do exercise delinquency
    assert mismatches == []
