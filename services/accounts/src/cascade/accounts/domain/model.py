"""What the accounts service knows of an account, and its delinquency as at a business date.

The rules are the core-banking contract's: at the close of business date D the state counts
installments due on or before D, payments with a value date on or before D unless reversed
on or before D. Payments go to the oldest unpaid installment first: payments in order of
(value_date, payment_id), installments in order of (due_date, installment_id); what is left
over is credit for later installments. Everything here is a function of the set of facts,
never of their arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from cascade.accounts.domain.buckets import DEFAULT_BUCKETS, BucketSet

CURRENT, DELINQUENT, CLOSED = "current", "delinquent", "closed"


@dataclass(frozen=True)
class Installment:
    installment_id: str
    due_date: date
    amount_minor: int

    @property
    def order(self) -> tuple[date, str]:
        return self.due_date, self.installment_id


@dataclass(frozen=True)
class Payment:
    payment_id: str
    value_date: date
    amount_minor: int

    @property
    def order(self) -> tuple[date, str]:
        return self.value_date, self.payment_id


@dataclass(frozen=True)
class Reversal:
    payment_id: str
    reversed_on: date
    reason: str


@dataclass(frozen=True)
class Pause:
    """A delinquency pause: the days from `start_date` up to, not including, `end_date`.

    `end_date` None is open-ended (until resumed). Paused days do not count as past due.
    """

    pause_id: str
    start_date: date
    end_date: date | None
    reason: str

    def days_within(self, first: date, last: date) -> int:
        """Returns how many days from `first` to `last` (inclusive) this pause covers."""
        start = max(self.start_date, first)
        stop = last + timedelta(days=1)
        if self.end_date is not None:
            stop = min(stop, self.end_date)
        return max(0, (stop - start).days)

    def active_on(self, day: date) -> bool:
        """Returns whether `day` is a paused day."""
        return self.start_date <= day and (self.end_date is None or day < self.end_date)


@dataclass(frozen=True)
class Policy:
    """How one product's delinquency is classified."""

    buckets: BucketSet = DEFAULT_BUCKETS
    # Arrears at or below this (minor units, per currency) count as none.
    tolerance_minor: Mapping[str, int] = field(default_factory=dict)

    def tolerance(self, currency: str) -> int:
        return self.tolerance_minor.get(currency, 0)


@dataclass(frozen=True)
class Allocation:
    """Which installment each counted payment paid, and the credit left over."""

    paid_by_installment: Mapping[str, int]
    parts_by_payment: Mapping[str, tuple[tuple[str, int], ...]]
    credit_minor: int


@dataclass(frozen=True)
class Delinquency:
    """An account's figures as at `as_of` (None before any business day was closed)."""

    as_of: date | None
    status: str
    days_past_due: int
    bucket: str
    arrears_minor: int
    oldest_unpaid_due_date: date | None
    # What the set-based close needs: the due date of the oldest installment that counted
    # payments do not cover (None if all are), and the total of counted payments.
    unpaid_since: date | None
    counted_paid_minor: int
    # Arrears above zero but at or below the tolerance: they count as none.
    within_tolerance: bool = False


def counted_payments(
    payments: Iterable[Payment], reversals: Mapping[str, Reversal], as_of: date | None
) -> list[Payment]:
    """Returns the payments that count at the close of `as_of`, in allocation order."""
    if as_of is None:
        return []
    counted = [
        p
        for p in payments
        if p.value_date <= as_of
        and not (p.payment_id in reversals and reversals[p.payment_id].reversed_on <= as_of)
    ]
    return sorted(counted, key=lambda p: p.order)


def allocate(installments: Iterable[Installment], payments: Iterable[Payment]) -> Allocation:
    """Returns the oldest-first allocation of `payments` (already in order) to installments."""
    ordered = sorted(installments, key=lambda i: i.order)
    still_open = [i.amount_minor for i in ordered]
    paid = {i.installment_id: 0 for i in ordered}
    parts: dict[str, tuple[tuple[str, int], ...]] = {}
    credit, position = 0, 0
    for payment in payments:
        left, taken = payment.amount_minor, []
        while left and position < len(ordered):
            installment_id = ordered[position].installment_id
            share = min(left, still_open[position])
            taken.append((installment_id, share))
            paid[installment_id] += share
            still_open[position] -= share
            left -= share
            if still_open[position] == 0:
                position += 1
        parts[payment.payment_id] = tuple(taken)
        credit += left
    return Allocation(paid, parts, credit)


def assess(
    installments: Iterable[Installment],
    payments: Iterable[Payment],
    reversals: Mapping[str, Reversal],
    pauses: Iterable[Pause],
    *,
    as_of: date | None,
    currency: str,
    policy: Policy,
) -> Delinquency:
    """Returns the delinquency of an account at the close of `as_of`."""
    ordered = sorted(installments, key=lambda i: i.order)
    paid_total = sum(p.amount_minor for p in counted_payments(payments, reversals, as_of))
    unpaid_since, covered = None, paid_total
    for installment in ordered:
        if covered < installment.amount_minor:
            unpaid_since = installment.due_date
            break
        covered -= installment.amount_minor
    if as_of is None:
        return Delinquency(None, CURRENT, 0, policy.buckets.current_label, 0, None, unpaid_since, 0)
    due_before = sum(i.amount_minor for i in ordered if i.due_date < as_of)
    arrears = max(0, due_before - paid_total)
    oldest = unpaid_since if unpaid_since is not None and unpaid_since < as_of else None
    days, tolerance = 0, policy.tolerance(currency)
    if arrears > tolerance and unpaid_since is not None:
        first_late_day = unpaid_since + timedelta(days=1)
        paused = sum(p.days_within(first_late_day, as_of) for p in pauses)
        days = max(0, (as_of - unpaid_since).days - paused)
    status = DELINQUENT if days >= 1 else CURRENT
    bucket = policy.buckets.label_for(days)
    tolerated = 0 < arrears <= tolerance
    return Delinquency(
        as_of, status, days, bucket, arrears, oldest, unpaid_since, paid_total, tolerated
    )
