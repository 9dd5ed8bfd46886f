"""The account aggregate: core banking's facts about one account and what they imply.

Facts are identified within their account (installment_id, payment_id). A repeated fact
with the same content is a duplicate and changes nothing; with different content it is a
conflict, a bad event, never a silent overwrite. Each change reassesses the account as at
the last closed business date and records the events downstream must hear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from cascade.accounts.domain import events
from cascade.accounts.domain.model import (
    CLOSED,
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


class BadEvent(Exception):
    """An event the rules refuse: it goes to the dead-letter topic with `reason`.

    The message names the rule, never a value: events carry personal data.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Profile:
    """What core banking said when it opened the account, plus the latest contact snapshot."""

    product: str
    currency: str
    opened_on: date
    customer: Mapping[str, Any]  # personal data: stored and carried on events, never logged
    contact_as_of: tuple[datetime, str]  # (event time, event id) of the snapshot, to order them
    opened_digest: str

    def attribute(self, name: str) -> str:
        return str(self.customer.get(name, ""))


@dataclass(frozen=True)
class Closure:
    closed_on: date
    reason: str


def not_assessed(policy: Policy) -> Delinquency:
    """Returns the figures of an account no business day has assessed yet."""
    return Delinquency(None, "current", 0, policy.buckets.current_label, 0, None, None, 0)


@dataclass
class Account:
    account_id: str
    state: Delinquency
    profile: Profile | None = None
    closure: Closure | None = None
    installments: dict[str, Installment] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    reversals: dict[str, Reversal] = field(default_factory=dict)
    pauses: dict[str, Pause] = field(default_factory=dict)
    applied_payments: set[str] = field(default_factory=set)
    effective_reversals: set[str] = field(default_factory=set)
    pending_events: list[events.DomainEvent] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.profile is not None

    @property
    def is_closed(self) -> bool:
        return self.closure is not None

    def open(self, profile: Profile) -> bool:
        """Records the opening; returns False for a duplicate."""
        if self.profile is not None:
            _same_or_conflict(self.profile.opened_digest == profile.opened_digest, "account")
            return False
        self.profile = profile
        return True

    def change_contact(self, customer: Mapping[str, Any], as_of: tuple[datetime, str]) -> bool:
        """Keeps the newest snapshot by event time; returns False if `customer` is older.

        A newer snapshot with the same content is news to no one: it moves the snapshot's
        time (so that an older one arriving later stays older) but announces nothing.
        """
        profile = self._opened()
        if as_of <= profile.contact_as_of:
            return False
        unchanged = customer == profile.customer
        self.profile = replace(profile, customer=customer, contact_as_of=as_of)
        if not unchanged:
            self.pending_events.append(events.ContactChanged(self.account_id))
        return True

    def add_installment(self, installment: Installment, currency: str) -> bool:
        """Records an installment; returns False for a duplicate."""
        self._check_currency(currency)
        return _add(self.installments, installment.installment_id, installment, "installment")

    def add_payment(self, payment: Payment, currency: str) -> bool:
        """Records a payment; returns False for a duplicate."""
        self._check_currency(currency)
        return _add(self.payments, payment.payment_id, payment, "payment")

    def add_reversal(self, reversal: Reversal) -> bool:
        """Records a reversal (its payment may come later); returns False for a duplicate."""
        return _add(self.reversals, reversal.payment_id, reversal, "reversal")

    def close(self, closure: Closure, as_of: date | None, policy: Policy) -> bool:
        """Closes the account: its figures, assessed with every fact known, stay as they are."""
        if self.closure is not None:
            _same_or_conflict(self.closure == closure, "closure")
            return False
        self._opened()
        self.reassess(as_of, policy, events.CORRECTION)
        self.closure = closure
        self.state = replace(self.state, status=CLOSED)
        self.pending_events.append(
            events.AccountClosed(self.account_id, closure.closed_on, closure.reason, self.state)
        )
        return True

    def pending_payment_ids(self) -> set[str]:
        """Returns the payments that have neither counted yet nor been cancelled."""
        cancelled = self.effective_reversals
        return {p for p in self.payments if p not in self.applied_payments and p not in cancelled}

    def reassess(self, as_of: date | None, policy: Policy, trigger: str) -> None:
        """Recomputes the figures as at `as_of`; records payments and transitions as events."""
        if self.is_closed or self.profile is None:
            return  # a closed account keeps its figures; an unopened one has none
        counted = counted_payments(self.payments.values(), self.reversals, as_of)
        after = assess(
            self.installments.values(),
            self.payments.values(),
            self.reversals,
            self.pauses.values(),
            as_of=as_of,
            currency=self.profile.currency,
            policy=policy,
        )
        self._announce_payments(counted, as_of, after)
        self.pending_events.extend(events.transitions(self.state, after, self.account_id, trigger))
        self.state = after

    def _announce_payments(
        self, counted: list[Payment], as_of: date | None, after: Delinquency
    ) -> None:
        fresh = [p for p in counted if p.payment_id not in self.applied_payments]
        if fresh:
            allocation = allocate(self.installments.values(), counted)
            for payment in fresh:
                self.applied_payments.add(payment.payment_id)
                self.pending_events.append(
                    self._applied(payment, allocation.parts_by_payment, after)
                )
        if as_of is None:
            return
        for reversal in self.reversals.values():
            reversed_payment = self.payments.get(reversal.payment_id)
            if reversed_payment is None or reversal.reversed_on > as_of:
                continue  # a reversal waits for its payment, and for its date
            if reversal.payment_id in self.effective_reversals:
                continue
            self.effective_reversals.add(reversal.payment_id)
            if reversal.payment_id in self.applied_payments:
                self.pending_events.append(
                    events.PaymentReversed(
                        self.account_id,
                        reversed_payment.payment_id,
                        reversed_payment.amount_minor,
                        reversal.reversed_on,
                        reversal.reason,
                        after,
                    )
                )

    def _applied(
        self,
        payment: Payment,
        parts: Mapping[str, tuple[tuple[str, int], ...]],
        after: Delinquency,
    ) -> events.PaymentApplied:
        allocation = parts.get(payment.payment_id, ())
        credit = payment.amount_minor - sum(amount for _, amount in allocation)
        return events.PaymentApplied(
            self.account_id,
            payment.payment_id,
            payment.amount_minor,
            payment.value_date,
            allocation,
            credit,
            after,
        )

    def _opened(self) -> Profile:
        if self.profile is None:
            raise ValueError("the account is not open")  # the service layer holds such events
        return self.profile

    def _check_currency(self, currency: str) -> None:
        if currency != self._opened().currency:
            raise BadEvent("currency_mismatch", "the currency differs from the account's currency")


def _add(facts: dict[str, Any], key: str, fact: object, kind: str) -> bool:
    known = facts.get(key)
    if known is not None:
        _same_or_conflict(known == fact, kind)
        return False
    facts[key] = fact
    return True


def _same_or_conflict(same: bool, kind: str) -> None:
    if not same:
        raise BadEvent(
            "identity_conflict", f"a {kind} with this identity was received with different content"
        )
