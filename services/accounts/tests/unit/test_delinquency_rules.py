"""Days past due and arrears, example by example, as the core-banking contract states them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pytest

from cascade.accounts.domain.model import (
    Delinquency,
    Installment,
    Pause,
    Payment,
    Policy,
    Reversal,
    allocate,
    assess,
    counted_payments,
)

pytestmark = pytest.mark.unit

D = date.fromisoformat


def figures(
    installments: Iterable[Installment],
    payments: Iterable[Payment] = (),
    reversals: Iterable[Reversal] = (),
    pauses: Iterable[Pause] = (),
    *,
    as_of: str | None,
    tolerance: int = 0,
) -> Delinquency:
    policy = Policy(tolerance_minor={"CNY": tolerance})
    by_payment = {r.payment_id: r for r in reversals}
    day = None if as_of is None else D(as_of)
    return assess(
        installments, payments, by_payment, pauses, as_of=day, currency="CNY", policy=policy
    )


def due(installment_id: str, on: str, amount: int = 150_000) -> Installment:
    return Installment(installment_id, D(on), amount)


def paid(payment_id: str, on: str, amount: int) -> Payment:
    return Payment(payment_id, D(on), amount)


def pause(start: str, end: str | None, pause_id: str = "PSE-1") -> Pause:
    return Pause(pause_id, D(start), None if end is None else D(end), "hardship")


FEB = [due("INS-1", "2026-02-05")]


def test_an_installment_unpaid_at_the_close_of_the_day_after_it_fell_due_is_one_day_late() -> None:
    state = figures(FEB, as_of="2026-02-06")

    assert (state.days_past_due, state.status, state.bucket) == (1, "delinquent", "1-29")
    assert state.arrears_minor == 150_000
    assert state.oldest_unpaid_due_date == D("2026-02-05")


def test_an_installment_due_on_the_business_date_itself_is_not_yet_past_due() -> None:
    state = figures(FEB, as_of="2026-02-05")

    assert (state.days_past_due, state.status, state.bucket) == (0, "current", "current")
    assert state.arrears_minor == 0
    assert state.oldest_unpaid_due_date is None


def test_arrears_count_only_installments_due_strictly_before_the_business_date() -> None:
    state = figures([*FEB, due("INS-2", "2026-02-06", 7)], as_of="2026-02-06")

    assert (state.days_past_due, state.arrears_minor) == (1, 150_000)


def test_before_any_business_day_is_closed_nothing_counts() -> None:
    state = figures(FEB, [paid("PAY-1", "2026-01-01", 10)], as_of=None)

    assert (state.as_of, state.status, state.days_past_due, state.arrears_minor) == (
        None,
        "current",
        0,
        0,
    )
    assert state.counted_paid_minor == 0


def test_a_partial_payment_keeps_counting_days_from_the_oldest_unpaid_installment() -> None:
    installments = [due("INS-1", "2026-02-05", 100), due("INS-2", "2026-03-05", 100)]

    state = figures(installments, [paid("PAY-1", "2026-02-10", 50)], as_of="2026-03-10")

    assert (state.days_past_due, state.bucket, state.arrears_minor) == (33, "30-59", 150)
    assert state.oldest_unpaid_due_date == D("2026-02-05")


def test_once_the_oldest_installment_is_paid_days_count_from_the_next_unpaid_one() -> None:
    installments = [due("INS-1", "2026-02-05", 100), due("INS-2", "2026-03-05", 100)]

    state = figures(installments, [paid("PAY-1", "2026-02-10", 120)], as_of="2026-03-10")

    assert (state.days_past_due, state.arrears_minor) == (5, 80)
    assert state.oldest_unpaid_due_date == D("2026-03-05")


def test_an_overpayment_is_held_as_credit_and_applied_to_the_next_installment() -> None:
    first = due("INS-1", "2026-02-05", 100)
    later = due("INS-2", "2026-03-05", 100)
    payment = paid("PAY-1", "2026-02-01", 150)

    assert figures([first], [payment], as_of="2026-02-06").status == "current"
    assert allocate([first], [payment]).credit_minor == 50
    assert allocate([first, later], [payment]).paid_by_installment == {"INS-1": 100, "INS-2": 50}
    state = figures([first, later], [payment], as_of="2026-03-06")
    assert (state.days_past_due, state.arrears_minor) == (1, 50)


def test_a_future_dated_payment_counts_from_its_value_date() -> None:
    payment = paid("PAY-1", "2026-02-20", 150_000)

    before = figures(FEB, [payment], as_of="2026-02-19")
    on_value_date = figures(FEB, [payment], as_of="2026-02-20")

    assert (before.days_past_due, before.counted_paid_minor) == (14, 0)
    assert (on_value_date.days_past_due, on_value_date.status) == (0, "current")
    assert on_value_date.arrears_minor == 0


def test_a_reversal_removes_its_payment_from_the_value_date_on_once_it_is_dated() -> None:
    payment = paid("PAY-1", "2026-02-01", 150_000)
    reversal = Reversal("PAY-1", D("2026-02-10"), "insufficient_funds")

    before = figures(FEB, [payment], [reversal], as_of="2026-02-09")
    after = figures(FEB, [payment], [reversal], as_of="2026-02-10")

    assert before.status == "current"
    assert (after.days_past_due, after.arrears_minor) == (5, 150_000)
    assert counted_payments([payment], {"PAY-1": reversal}, D("2026-02-10")) == []


def test_a_reversal_that_arrives_before_its_payment_waits_and_cancels_it_when_it_comes() -> None:
    reversal = Reversal("PAY-1", D("2026-02-03"), "insufficient_funds")

    waiting = figures(FEB, [], [reversal], as_of="2026-02-10")
    arrived = figures(FEB, [paid("PAY-1", "2026-02-01", 150_000)], [reversal], as_of="2026-02-10")

    assert waiting == figures(FEB, as_of="2026-02-10")
    assert arrived == waiting


def test_arrears_at_or_below_the_tolerance_count_as_none() -> None:
    state = figures(FEB, [paid("PAY-1", "2026-02-01", 149_995)], as_of="2026-03-01", tolerance=5)

    assert (state.days_past_due, state.status, state.bucket) == (0, "current", "current")
    assert (state.arrears_minor, state.within_tolerance) == (5, True)


def test_arrears_one_unit_above_the_tolerance_are_past_due() -> None:
    state = figures(FEB, [paid("PAY-1", "2026-02-01", 149_994)], as_of="2026-03-01", tolerance=5)

    assert (state.days_past_due, state.within_tolerance) == (24, False)


def test_no_arrears_at_all_is_not_reported_as_within_tolerance() -> None:
    assert not figures(FEB, as_of="2026-02-05", tolerance=5).within_tolerance


def test_the_tolerance_applies_to_its_own_currency_and_defaults_to_zero() -> None:
    policy = Policy(tolerance_minor={"USD": 1_000})
    payments = [paid("PAY-1", "2026-02-01", 149_999)]

    state = assess(FEB, payments, {}, (), as_of=D("2026-02-06"), currency="CNY", policy=policy)

    assert (state.days_past_due, state.arrears_minor) == (1, 1)
    assert policy.tolerance("CNY") == 0


def test_a_closed_pause_subtracts_each_day_from_its_start_up_to_its_end() -> None:
    state = figures(FEB, pauses=[pause("2026-02-10", "2026-02-15")], as_of="2026-02-20")

    assert state.days_past_due == 15 - 5
    assert state.arrears_minor == 150_000


def test_an_open_ended_pause_subtracts_every_day_from_its_start_to_the_business_date() -> None:
    state = figures(FEB, pauses=[pause("2026-02-10", None)], as_of="2026-02-20")

    assert state.days_past_due == 15 - 11


def test_a_pause_entirely_before_the_unpaid_due_date_subtracts_nothing() -> None:
    state = figures(FEB, pauses=[pause("2026-01-10", "2026-02-05")], as_of="2026-02-20")

    assert state.days_past_due == 15


def test_only_pause_days_after_the_unpaid_due_date_are_subtracted() -> None:
    state = figures(FEB, pauses=[pause("2026-02-01", "2026-02-08")], as_of="2026-02-20")

    assert state.days_past_due == 15 - 2  # 6 and 7 February


def test_several_pauses_each_subtract_their_days() -> None:
    pauses = [pause("2026-02-06", "2026-02-08", "PSE-1"), pause("2026-02-18", None, "PSE-2")]

    state = figures(FEB, pauses=pauses, as_of="2026-02-20")

    assert state.days_past_due == 15 - 2 - 3


def test_a_pause_over_every_late_day_leaves_the_account_current_with_its_arrears() -> None:
    state = figures(FEB, pauses=[pause("2026-02-06", None)], as_of="2026-02-20")

    assert (state.days_past_due, state.status) == (0, "current")
    assert state.arrears_minor == 150_000


def test_payments_are_allocated_by_value_date_then_payment_id() -> None:
    payments = [
        paid("PAY-2", "2026-02-01", 30),
        paid("PAY-1", "2026-02-01", 150),
        paid("PAY-0", "2026-02-02", 10),
    ]
    installments = [due("INS-A", "2026-02-05", 100), due("INS-B", "2026-03-05", 100)]

    ordered = counted_payments(payments, {}, D("2026-02-02"))
    allocation = allocate(installments, ordered)

    assert [p.payment_id for p in ordered] == ["PAY-1", "PAY-2", "PAY-0"]
    assert allocation.parts_by_payment == {
        "PAY-1": (("INS-A", 100), ("INS-B", 50)),
        "PAY-2": (("INS-B", 30),),
        "PAY-0": (("INS-B", 10),),
    }
    assert allocation.credit_minor == 0


def test_installments_due_the_same_day_are_paid_in_installment_id_order() -> None:
    installments = [due("INS-B", "2026-02-05", 100), due("INS-A", "2026-02-05", 100)]
    payments = [paid("PAY-1", "2026-02-01", 150)]

    allocation = allocate(installments, payments)
    state = figures(installments, payments, as_of="2026-02-07")

    assert allocation.parts_by_payment["PAY-1"] == (("INS-A", 100), ("INS-B", 50))
    assert (state.days_past_due, state.arrears_minor) == (2, 50)


def test_an_installment_announced_after_a_payment_still_receives_it() -> None:
    payment = paid("PAY-1", "2026-01-20", 100)
    early, late = due("INS-2", "2026-03-05", 100), due("INS-1", "2026-02-05", 100)

    allocation = allocate([early, late], [payment])

    assert allocation.paid_by_installment == {"INS-1": 100, "INS-2": 0}
    assert figures([early, late], [payment], as_of="2026-02-28").status == "current"
