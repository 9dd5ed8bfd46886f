"""The account's figures are a function of the set of facts, never of their arrival order."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from cascade.accounts.domain import events
from cascade.accounts.domain.account import Account, Profile, not_assessed
from cascade.accounts.domain.model import Installment, Pause, Payment, Policy, Reversal
from cascade.accounts.domain.pauses import start_pause

pytestmark = pytest.mark.unit

D = date.fromisoformat
POLICY = Policy(tolerance_minor={"CNY": 100})
AS_OF = D("2026-04-20")
OPENED_AT = (datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "EVT-0")


def opened() -> Account:
    account = Account("ACC-1", not_assessed(POLICY))
    account.open(Profile("credit_card", "CNY", D("2026-01-05"), {"n": 0}, OPENED_AT, "opened"))
    return account


Fact = Callable[[Account, date], object]


def facts_of_an_account() -> list[Fact]:
    """Four monthly installments, payments, reversals and a supervisor's pause."""
    installments = [Installment(f"INS-{n}", D(f"2026-0{n}-05"), 40_000) for n in range(1, 5)]
    payments = [
        Payment("PAY-1", D("2026-02-01"), 30_000),
        Payment("PAY-2", D("2026-02-01"), 50_000),
        Payment("PAY-3", D("2026-03-20"), 25_000),
        Payment("PAY-4", D("2026-04-30"), 90_000),  # after the business date: not counted
    ]
    reversals = [
        Reversal("PAY-2", D("2026-03-01"), "insufficient_funds"),
        Reversal("PAY-4", D("2026-05-02"), "fraud"),
        Reversal("PAY-9", D("2026-02-02"), "fraud"),  # its payment never arrives
    ]
    return [
        *(lambda a, _, i=i: a.add_installment(i, "CNY") for i in installments),
        *(lambda a, _, p=p: a.add_payment(p, "CNY") for p in payments),
        *(lambda a, _, r=r: a.add_reversal(r) for r in reversals),
    ]


def pause_for_ten_days(account: Account, as_of: date) -> None:
    paused = Pause("PSE-1", D("2026-03-01"), D("2026-03-11"), "hardship")
    start_pause(account, paused, as_of=as_of, policy=POLICY)


@pytest.mark.parametrize("seed", range(20))
def test_the_same_facts_in_any_order_between_any_closes_give_the_same_figures(seed: int) -> None:
    rng = random.Random(seed)
    # Every fact is delivered twice; each arrival corrects the figures at the last close.
    facts = [*facts_of_an_account(), *facts_of_an_account(), pause_for_ten_days]
    rng.shuffle(facts)
    closes = sorted(D("2026-01-01") + timedelta(days=rng.randrange(110)) for _ in facts)
    account = opened()

    for fact, business_date in zip(facts, closes, strict=True):
        fact(account, business_date)
        account.reassess(business_date, POLICY, events.CORRECTION)
        account.reassess(business_date, POLICY, events.CLOSE)
    account.reassess(AS_OF, POLICY, events.CLOSE)

    # Counted: PAY-1 and PAY-3, 55,000 of the 160,000 due, so INS-2 (5 February) is the
    # oldest unpaid: 74 days, less the 10 paused.
    assert (account.state.days_past_due, account.state.bucket) == (64, "60-89")
    assert account.state.arrears_minor == 105_000
    assert account.state.oldest_unpaid_due_date == D("2026-02-05")
    assert account.applied_payments - account.effective_reversals == {"PAY-1", "PAY-3"}
    applied = [e.payment_id for e in account.pending_events if isinstance(e, events.PaymentApplied)]
    assert len(applied) == len(set(applied))


@pytest.mark.parametrize("seed", range(20))
def test_the_newest_contact_snapshot_by_time_then_id_wins_in_any_order(seed: int) -> None:
    later = datetime(2026, 3, 1, tzinfo=UTC)
    snapshots = [
        ({"n": 1}, (datetime(2026, 2, 1, tzinfo=UTC), "EVT-1")),
        ({"n": 2}, (later, "EVT-2")),
        ({"n": 3}, (later, "EVT-3")),
        ({"n": -1}, (datetime(2025, 12, 1, tzinfo=UTC), "EVT-X")),  # older than the opening
    ]
    random.Random(seed).shuffle(snapshots)
    account = opened()

    for customer, as_of in snapshots:
        account.change_contact(customer, as_of)

    assert account.profile is not None
    assert (account.profile.customer, account.profile.contact_as_of) == ({"n": 3}, (later, "EVT-3"))
    assert account.change_contact({"n": 3}, (later, "EVT-3")) is False  # redelivered
    assert account.change_contact({"n": 2}, (later, "EVT-2")) is False
    changes = [e for e in account.pending_events if isinstance(e, events.ContactChanged)]
    assert 1 <= len(changes) <= 3
