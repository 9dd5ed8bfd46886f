"""DPD, arrears and allocation against a small, independent reference model (hypothesis).

The reference is deliberately naive: money moves one minor unit at a time to the first
installment that still owes a unit, and late days are counted by walking the calendar one
day at a time and asking every pause whether it covers that day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.accounts.domain.buckets import DEFAULT_BUCKETS, BucketSet, DelinquencyRange
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

EXAMPLES = settings(max_examples=200, deadline=None, database=None)
FEWER = settings(EXAMPLES, max_examples=100)  # for the cheaper consistency checks
START = date(2026, 1, 1)


def day(offset: int) -> date:
    return START + timedelta(days=offset)


@dataclass(frozen=True)
class Facts:
    installments: list[Installment]
    payments: list[Payment]
    reversals: dict[str, Reversal]
    pauses: list[Pause]
    as_of: date | None
    tolerance: int = 0


# --- the reference model ---------------------------------------------------------------


def reference_counted(facts: Facts, as_of: date) -> list[Payment]:
    """Payments dated by `as_of` and not reversed by then, in (value date, id) order."""
    counted = []
    for payment in facts.payments:
        reversal = facts.reversals.get(payment.payment_id)
        if payment.value_date <= as_of and (reversal is None or reversal.reversed_on > as_of):
            counted.append(payment)
    return sorted(counted, key=lambda p: (p.value_date, p.payment_id))


def reference_paid(installments: list[Installment], payments: list[Payment]) -> dict[str, int]:
    """Pays one unit at a time into the first installment (by due date, id) still owing."""
    ordered = sorted(installments, key=lambda i: (i.due_date, i.installment_id))
    paid = {i.installment_id: 0 for i in ordered}
    for payment in payments:
        for _unit in range(payment.amount_minor):
            owing = [i for i in ordered if paid[i.installment_id] < i.amount_minor]
            if owing:
                paid[owing[0].installment_id] += 1
    return paid


def reference_figures(facts: Facts) -> tuple[int, int]:
    """Returns (DPD, arrears) at the close of `facts.as_of`."""
    as_of = facts.as_of
    if as_of is None:
        return 0, 0
    paid = reference_paid(facts.installments, reference_counted(facts, as_of))
    late = [i for i in facts.installments if i.due_date < as_of]
    arrears = sum(i.amount_minor - paid[i.installment_id] for i in late)
    unpaid = [i.due_date for i in late if paid[i.installment_id] < i.amount_minor]
    if arrears <= facts.tolerance or not unpaid:
        return 0, arrears
    late_days, current = 0, min(unpaid) + timedelta(days=1)
    while current <= as_of:
        if not any(is_paused(p, current) for p in facts.pauses):
            late_days += 1
        current += timedelta(days=1)
    return late_days, arrears


def is_paused(pause: Pause, current: date) -> bool:
    return pause.start_date <= current and (pause.end_date is None or current < pause.end_date)


# --- generated facts -------------------------------------------------------------------
# Strategies are built once, at import: building them inside every draw makes hypothesis
# several times slower.

ID = st.integers(0, 20)
INSTALLMENT_ROWS = st.lists(
    st.tuples(ID, st.integers(0, 60), st.integers(1, 50)), max_size=6, unique_by=lambda r: r[0]
)
PAYMENT_ROWS = st.lists(
    st.tuples(ID, st.integers(0, 70), st.integers(1, 80)), max_size=6, unique_by=lambda r: r[0]
)
installments = INSTALLMENT_ROWS.map(
    lambda rows: [Installment(f"INS-{n}", day(due), amount) for n, due, amount in rows]
)
payments = PAYMENT_ROWS.map(
    lambda rows: [Payment(f"PAY-{n}", day(value), amount) for n, value, amount in rows]
)


def as_pauses(days: set[int]) -> list[Pause]:
    """Sorted distinct days taken in pairs are (start, end); an odd one out is open-ended."""
    bounds = sorted(days)
    starts, ends = bounds[::2], [*bounds[1::2], None]
    return [
        Pause(f"PSE-{n}", day(first), None if last is None else day(last), "hardship")
        for n, (first, last) in enumerate(zip(starts, ends, strict=False))
    ]


# Non-overlapping, as pauses.py insists; only the last may be open-ended.
pauses = st.sets(st.integers(0, 90), max_size=7).map(as_pauses)
BITS = st.integers(0, 2**7 - 1)
PICK = st.integers(0, 1_000)
NUDGE = st.integers(-1, 1)
REVERSAL_DELAY = st.integers(-3, 30)
DATE_KIND = st.sampled_from(["near"] * 5 + ["any"] * 4 + ["none"])
ANY_DAY = st.integers(0, 90).map(day)
TOLERANCE_KIND = st.sampled_from(["zero", "five", "near", "near"])


def business_date(draw: st.DrawFn, known: Facts) -> date | None:
    """None one time in ten, else any day or, more often, a day next to a fact's date."""
    kind = draw(DATE_KIND)
    if kind == "none":
        return None
    if kind == "any":
        return draw(ANY_DAY)
    dates = [i.due_date for i in known.installments] + [p.value_date for p in known.payments]
    dates += [r.reversed_on for r in known.reversals.values()]
    dates += [p.start_date for p in known.pauses] + [p.end_date for p in known.pauses if p.end_date]
    return dates[draw(PICK) % len(dates)] + timedelta(days=draw(NUDGE))


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    paid = draw(payments)
    owed = draw(installments.filter(bool))
    # Reversals of some payments, and one of a payment the account never sees (it waits).
    candidates, chosen = [p.payment_id for p in paid] + ["PAY-99"], draw(BITS)
    value_dates = {p.payment_id: p.value_date for p in paid}
    reversals = {
        pid: Reversal(
            pid, value_dates.get(pid, START) + timedelta(days=draw(REVERSAL_DELAY)), "nsf"
        )
        for bit, pid in enumerate(candidates)
        if chosen >> bit & 1
    }
    f = Facts(owed, paid, reversals, draw(pauses), as_of=None)
    f = replace(f, as_of=business_date(draw, f))
    # Often the tolerance sits right at the arrears, to probe its boundary.
    kind = draw(TOLERANCE_KIND)
    near = max(0, reference_figures(f)[1] + draw(NUDGE))
    return replace(f, tolerance={"zero": 0, "five": 5, "near": near}[kind])


@st.composite
def bucket_sets(draw: st.DrawFn) -> BucketSet:
    cuts = sorted(draw(st.sets(st.integers(1, 120), max_size=5)))
    bounds = [0, *cuts]
    ranges = [
        DelinquencyRange(f"b{n}", low, None if n == len(cuts) else bounds[n + 1] - 1)
        for n, low in enumerate(bounds)
    ]
    return BucketSet.of(draw(st.permutations(ranges)))


def domain_figures(f: Facts, buckets: BucketSet = DEFAULT_BUCKETS) -> Delinquency:
    policy = Policy(buckets=buckets, tolerance_minor={"CNY": f.tolerance})
    return assess(
        f.installments,
        f.payments,
        f.reversals,
        f.pauses,
        as_of=f.as_of,
        currency="CNY",
        policy=policy,
    )


# --- properties ------------------------------------------------------------------------


@EXAMPLES
@given(facts())
def test_dpd_and_arrears_equal_the_reference_model(f: Facts) -> None:
    state = domain_figures(f)

    assert (state.days_past_due, state.arrears_minor) == reference_figures(f)
    assert state.status == ("delinquent" if state.days_past_due >= 1 else "current")
    assert state.within_tolerance == (0 < state.arrears_minor <= f.tolerance)


@EXAMPLES
@given(facts(), st.integers(0, 2**32))
def test_the_figures_do_not_depend_on_the_order_of_the_facts(f: Facts, seed: int) -> None:
    rng = random.Random(seed)
    shuffled = Facts(
        rng.sample(f.installments, len(f.installments)),
        rng.sample(f.payments, len(f.payments)),
        dict(rng.sample(sorted(f.reversals.items()), len(f.reversals))),
        rng.sample(f.pauses, len(f.pauses)),
        f.as_of,
        f.tolerance,
    )

    assert domain_figures(shuffled) == domain_figures(f)


@EXAMPLES
@given(installments, payments)
def test_allocation_conserves_money_and_pays_the_oldest_installment_first(
    owed: list[Installment], received: list[Payment]
) -> None:
    ordered_payments = sorted(received, key=lambda p: p.order)
    allocation = allocate(owed, ordered_payments)

    shares = [amount for parts in allocation.parts_by_payment.values() for _, amount in parts]
    total = sum(p.amount_minor for p in received)
    assert sum(shares) + allocation.credit_minor == total
    by_installment = {i.installment_id: 0 for i in owed}
    for payment in received:
        parts = allocation.parts_by_payment[payment.payment_id]
        assert sum(amount for _, amount in parts) <= payment.amount_minor
        for installment_id, amount in parts:
            by_installment[installment_id] += amount
    assert by_installment == allocation.paid_by_installment
    ordered = sorted(owed, key=lambda i: i.order)
    for position, installment in enumerate(ordered):
        paid = allocation.paid_by_installment[installment.installment_id]
        assert 0 <= paid <= installment.amount_minor
        if paid:
            assert all(
                allocation.paid_by_installment[e.installment_id] == e.amount_minor
                for e in ordered[:position]
            )
    assert dict(allocation.paid_by_installment) == reference_paid(owed, ordered_payments)
    if allocation.credit_minor:
        assert all(allocation.paid_by_installment[i.installment_id] == i.amount_minor for i in owed)


@FEWER
@given(facts())
def test_dpd_never_exceeds_the_days_since_the_oldest_unpaid_due_date(f: Facts) -> None:
    state = domain_figures(f)

    if state.oldest_unpaid_due_date is None or state.as_of is None:
        assert state.days_past_due == 0
    else:
        assert 0 <= state.days_past_due <= (state.as_of - state.oldest_unpaid_due_date).days


@EXAMPLES
@given(facts(), bucket_sets())
def test_the_bucket_is_the_label_of_the_range_the_dpd_falls_in(
    f: Facts, buckets: BucketSet
) -> None:
    state = domain_figures(f, buckets)

    assert state.bucket == buckets.label_for(state.days_past_due)


@FEWER
@given(facts())
def test_counted_payments_are_exactly_the_reference_ones(f: Facts) -> None:
    as_of = f.as_of
    counted = counted_payments(f.payments, f.reversals, as_of)

    assert counted == ([] if as_of is None else reference_counted(f, as_of))
