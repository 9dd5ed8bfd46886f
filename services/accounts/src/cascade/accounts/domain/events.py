"""What happened to an account, in the domain's words (past tense, immutable).

`translators.py` turns these into the integration events of `accounts.delinquency.v1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cascade.accounts.domain.model import Delinquency, Pause

# Why the figures moved: a business-day close, or an event/action that corrected them.
CLOSE, CORRECTION, PAUSE_ACTION = "business_day_closed", "correction", "pause"


@dataclass(frozen=True)
class DelinquencyStarted:
    account_id: str
    delinquency: Delinquency
    trigger: str


@dataclass(frozen=True)
class DelinquencyUpdated:
    account_id: str
    delinquency: Delinquency
    trigger: str


@dataclass(frozen=True)
class BucketChanged:
    account_id: str
    from_bucket: str
    delinquency: Delinquency
    trigger: str


@dataclass(frozen=True)
class AccountCured:
    account_id: str
    reason: str  # paid | within_tolerance | paused
    delinquency: Delinquency
    trigger: str


@dataclass(frozen=True)
class PaymentApplied:
    account_id: str
    payment_id: str
    amount_minor: int
    value_date: date
    allocation: tuple[tuple[str, int], ...]
    credit_minor: int
    delinquency: Delinquency


@dataclass(frozen=True)
class PaymentReversed:
    account_id: str
    payment_id: str
    amount_minor: int
    reversed_on: date
    reason: str
    delinquency: Delinquency


@dataclass(frozen=True)
class ContactChanged:
    account_id: str


@dataclass(frozen=True)
class PauseStarted:
    account_id: str
    pause: Pause


@dataclass(frozen=True)
class PauseEnded:
    account_id: str
    pause: Pause


@dataclass(frozen=True)
class AccountClosed:
    account_id: str
    closed_on: date
    reason: str
    delinquency: Delinquency


DomainEvent = (
    DelinquencyStarted
    | DelinquencyUpdated
    | BucketChanged
    | AccountCured
    | PaymentApplied
    | PaymentReversed
    | ContactChanged
    | PauseStarted
    | PauseEnded
    | AccountClosed
)


def transitions(
    before: Delinquency, after: Delinquency, account_id: str, trigger: str
) -> list[DomainEvent]:
    """Returns the events that tell downstream how the figures moved from `before` to `after`."""
    events: list[DomainEvent] = []
    if before.status != "delinquent" and after.status == "delinquent":
        events.append(DelinquencyStarted(account_id, after, trigger))
    if before.status == "delinquent" and after.status != "delinquent":
        events.append(AccountCured(account_id, cure_reason(after), after, trigger))
    if before.bucket != after.bucket:
        events.append(BucketChanged(account_id, before.bucket, after, trigger))
    changed = _figures(before) != _figures(after)
    if after.status == "delinquent" and (trigger == CLOSE or changed):
        events.append(DelinquencyUpdated(account_id, after, trigger))
    return events


def cure_reason(after: Delinquency) -> str:
    """Returns why a delinquent account is current again."""
    if after.arrears_minor == 0:
        return "paid"
    # Arrears remain: either they are within the product's tolerance, or every late day
    # fell in a delinquency pause.
    return "within_tolerance" if after.within_tolerance else "paused"


def _figures(state: Delinquency) -> tuple[object, ...]:
    return (state.days_past_due, state.arrears_minor, state.oldest_unpaid_due_date, state.bucket)
