"""The account aggregate: identity, duplicates, closing, and the events a reassessment records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from datetime import UTC, date, datetime
from typing import TypeVar

import pytest

from cascade.accounts.domain import events
from cascade.accounts.domain.account import Account, BadEvent, Closure, Profile, not_assessed
from cascade.accounts.domain.model import Installment, Pause, Payment, Policy, Reversal
from cascade.accounts.domain.pauses import start_pause

pytestmark = pytest.mark.unit

D = date.fromisoformat
POLICY = Policy(tolerance_minor={"CNY": 100})
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
E = TypeVar("E")
INS = Installment("INS-1", D("2026-02-05"), 150_000)
PAY = Payment("PAY-1", D("2026-02-01"), 60_000)
REV = Reversal("PAY-1", D("2026-02-08"), "insufficient_funds")


def opened(account_id: str = "ACC-1", digest: str = "opened-1") -> Account:
    account = Account(account_id, not_assessed(POLICY))
    account.open(Profile("credit_card", "CNY", D("2026-01-05"), {"n": 0}, (T0, "EVT-0"), digest))
    return account


def close_day(account: Account, on: str, trigger: str = events.CLOSE) -> list[events.DomainEvent]:
    """Reassesses at the close of `on`; returns the events that recorded."""
    seen = len(account.pending_events)
    account.reassess(D(on), POLICY, trigger)
    return account.pending_events[seen:]


def kinds(recorded: Sequence[object]) -> list[str]:
    return [type(event).__name__ for event in recorded]


def of_type(account: Account, kind: type[E]) -> list[E]:
    return [event for event in account.pending_events if isinstance(event, kind)]


def test_a_repeated_fact_with_the_same_content_is_a_duplicate_that_changes_nothing() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    account.add_payment(PAY, "CNY")
    account.add_reversal(REV)
    close_day(account, "2026-02-10")
    account.close(Closure(D("2026-06-30"), "paid_off"), D("2026-02-10"), POLICY)
    before = deepcopy(account)

    assert account.add_installment(deepcopy(INS), "CNY") is False
    assert account.add_payment(deepcopy(PAY), "CNY") is False
    assert account.add_reversal(deepcopy(REV)) is False
    assert account.profile is not None
    assert account.open(deepcopy(account.profile)) is False
    assert account.close(Closure(D("2026-06-30"), "paid_off"), D("2026-02-10"), POLICY) is False
    assert account == before


CONFLICTS: dict[str, Callable[[Account], object]] = {
    "installment amount": lambda a: a.add_installment(Installment("INS-1", INS.due_date, 1), "CNY"),
    "installment due date": lambda a: a.add_installment(
        Installment("INS-1", D("2026-03-05"), INS.amount_minor), "CNY"
    ),
    "payment amount": lambda a: a.add_payment(Payment("PAY-1", PAY.value_date, 1), "CNY"),
    "reversal date": lambda a: a.add_reversal(Reversal("PAY-1", D("2026-02-09"), REV.reason)),
    "opening": lambda a: a.open(
        Profile("mortgage", "CNY", D("2026-01-05"), {}, (T0, "EVT-9"), "opened-2")
    ),
    "closure": lambda a: a.close(Closure(D("2026-06-30"), "charged_off"), None, POLICY),
}


@pytest.mark.parametrize("conflict", CONFLICTS.values(), ids=CONFLICTS.keys())
def test_the_same_identity_with_different_content_is_a_bad_event_and_changes_nothing(
    conflict: Callable[[Account], object],
) -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    account.add_payment(PAY, "CNY")
    account.add_reversal(REV)
    account.close(Closure(D("2026-06-30"), "paid_off"), None, POLICY)
    before = deepcopy(account)

    with pytest.raises(BadEvent) as raised:
        conflict(account)

    assert raised.value.reason == "identity_conflict"
    assert "150000" not in str(raised.value)  # the message names the rule, never a value
    assert account == before


def test_an_installment_or_payment_in_another_currency_is_a_bad_event() -> None:
    account = opened()

    with pytest.raises(BadEvent) as installment:
        account.add_installment(INS, "USD")
    with pytest.raises(BadEvent) as payment:
        account.add_payment(PAY, "USD")

    assert installment.value.reason == payment.value.reason == "currency_mismatch"
    assert account.installments == {}
    assert account.payments == {}


def test_an_account_not_opened_yet_refuses_facts_and_has_no_figures_to_reassess() -> None:
    account = Account("ACC-1", not_assessed(POLICY))

    with pytest.raises(ValueError, match="not open"):
        account.add_installment(INS, "CNY")
    account.reassess(D("2026-02-10"), POLICY, events.CLOSE)

    assert account.state == not_assessed(POLICY)
    assert account.pending_events == []


def test_closing_freezes_the_figures_and_later_reassessments_change_nothing() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    close_day(account, "2026-02-10")

    assert account.close(Closure(D("2026-02-11"), "charged_off"), D("2026-02-10"), POLICY) is True
    closed = account.pending_events[-1]
    account.add_payment(Payment("PAY-2", D("2026-02-11"), 150_000), "CNY")

    assert close_day(account, "2026-02-20") == []
    assert isinstance(closed, events.AccountClosed)
    assert (closed.closed_on, closed.reason) == (D("2026-02-11"), "charged_off")
    assert (account.state.status, account.state.days_past_due) == ("closed", 5)
    assert closed.delinquency == account.state


def test_a_payment_is_announced_once_when_it_first_counts_however_often_it_is_reassessed() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    account.add_payment(Payment("PAY-2", D("2026-02-07"), 100_000), "CNY")
    account.add_payment(PAY, "CNY")

    close_day(account, "2026-02-03")
    close_day(account, "2026-02-04")
    assert account.pending_payment_ids() == {"PAY-2"}  # future-dated: not counted yet
    close_day(account, "2026-02-07")
    close_day(account, "2026-02-08")

    applied = of_type(account, events.PaymentApplied)
    assert [(e.payment_id, e.allocation, e.credit_minor) for e in applied] == [
        ("PAY-1", (("INS-1", 60_000),), 0),
        ("PAY-2", (("INS-1", 90_000),), 10_000),
    ]
    assert account.pending_payment_ids() == set()


def test_a_reversal_is_announced_once_it_is_dated_and_only_for_a_payment_that_was_applied() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    account.add_payment(PAY, "CNY")
    close_day(account, "2026-02-03")
    account.add_reversal(REV)

    assert of_type(account, events.PaymentReversed) == []
    close_day(account, "2026-02-07")
    assert of_type(account, events.PaymentReversed) == []
    close_day(account, "2026-02-08")
    close_day(account, "2026-02-09")

    [reversed_event] = of_type(account, events.PaymentReversed)
    assert (reversed_event.payment_id, reversed_event.amount_minor) == ("PAY-1", 60_000)
    assert (reversed_event.reversed_on, reversed_event.reason) == (REV.reversed_on, REV.reason)
    assert reversed_event.delinquency.arrears_minor == 150_000


def test_a_reversal_that_arrives_before_its_payment_cancels_it_silently_when_it_comes() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    account.add_reversal(REV)
    close_day(account, "2026-02-10")
    account.add_payment(PAY, "CNY")

    recorded = close_day(account, "2026-02-10", events.CORRECTION)

    assert recorded == []  # never applied, so nothing to reverse, and the figures stand
    assert account.state.arrears_minor == 150_000
    assert account.pending_payment_ids() == set()


def test_the_first_late_close_starts_delinquency_and_moves_the_bucket() -> None:
    account = opened()
    account.add_installment(INS, "CNY")

    assert close_day(account, "2026-02-05") == []
    recorded = close_day(account, "2026-02-06")

    assert kinds(recorded) == ["DelinquencyStarted", "BucketChanged", "DelinquencyUpdated"]
    started, moved, _ = recorded
    assert isinstance(started, events.DelinquencyStarted)
    assert started.trigger == events.CLOSE
    assert isinstance(moved, events.BucketChanged)
    assert moved.from_bucket == "current"
    assert moved.delinquency.bucket == "1-29"


def test_every_close_of_a_delinquent_account_records_an_update_even_without_change() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    start_pause(
        account, Pause("PSE-1", D("2026-02-08"), None, "hardship"), as_of=None, policy=POLICY
    )

    close_day(account, "2026-02-10")
    recorded = close_day(account, "2026-02-11")

    assert kinds(recorded) == ["DelinquencyUpdated"]
    assert account.state.days_past_due == 2


def test_a_correction_records_an_update_only_when_the_figures_change() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    close_day(account, "2026-02-10")
    account.add_reversal(Reversal("PAY-9", D("2026-02-09"), "fraud"))  # its payment is unknown

    unchanged = close_day(account, "2026-02-10", events.CORRECTION)
    account.add_payment(PAY, "CNY")
    changed = close_day(account, "2026-02-10", events.CORRECTION)

    assert unchanged == []
    assert kinds(changed) == ["PaymentApplied", "DelinquencyUpdated"]
    update = changed[-1]
    assert isinstance(update, events.DelinquencyUpdated)
    assert (update.trigger, update.delinquency.arrears_minor) == (events.CORRECTION, 90_000)


@pytest.mark.parametrize(
    ("paid", "reason"),
    [(150_000, "paid"), (149_900, "within_tolerance")],
    ids=["paid", "tolerance"],
)
def test_a_late_payment_cures_the_account_at_once_saying_why(paid: int, reason: str) -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    close_day(account, "2026-02-10")
    account.add_payment(Payment("PAY-2", D("2026-02-04"), paid), "CNY")

    recorded = close_day(account, "2026-02-10", events.CORRECTION)

    assert kinds(recorded) == ["PaymentApplied", "AccountCured", "BucketChanged"]
    cured = recorded[1]
    assert isinstance(cured, events.AccountCured)
    assert (cured.reason, cured.trigger) == (reason, events.CORRECTION)
    assert account.state.status == "current"


def test_crossing_a_bucket_boundary_records_the_bucket_left() -> None:
    account = opened()
    account.add_installment(INS, "CNY")
    close_day(account, "2026-03-06")  # 29 days

    recorded = close_day(account, "2026-03-07")

    assert kinds(recorded) == ["BucketChanged", "DelinquencyUpdated"]
    moved = recorded[0]
    assert isinstance(moved, events.BucketChanged)
    assert moved.from_bucket == "1-29"
    assert account.state.bucket == "30-59"


def test_a_closure_counts_every_fact_known_before_it_freezes_the_figures() -> None:
    # Opening, an overdue installment and the closure in one batch, closure applied last:
    # the figures frozen are those of every fact, not of the moment before the installment.
    account = opened()
    account.add_installment(INS, "CNY")
    account.close(Closure(D("2026-02-11"), "charged_off"), D("2026-02-10"), POLICY)

    assert (account.state.status, account.state.days_past_due) == ("closed", 5)
    assert account.state.arrears_minor == INS.amount_minor


def test_a_newer_contact_snapshot_with_the_same_content_announces_nothing() -> None:
    account = opened()
    assert account.profile is not None
    same = dict(account.profile.customer)

    assert account.change_contact(same, (T0.replace(hour=11), "EVT-8")) is True
    assert of_type(account, events.ContactChanged) == []
    assert account.profile.contact_as_of == (T0.replace(hour=11), "EVT-8")
