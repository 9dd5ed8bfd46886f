"""The accounts service's integration events, on topic `accounts.delinquency.v1`.

Every event carries what downstream needs to act without calling accounts: the product,
currency, jurisdiction, time zone and language, and the delinquency figures as at the
business date. The contact snapshot (personal data) travels only where a contact may follow:
when a delinquency starts and when the contact changes. Payloads change only by adding
optional fields; anything else is a new major version (`...v2`), registered as a new type.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cascade.shared.contracts.corebanking import (
    ClosureReason,
    Country,
    Currency,
    Customer,
    Language,
    Product,
    TimeZone,
)
from cascade.shared.messaging.registry import EventType

TOPIC = "accounts.delinquency.v1"
SOURCE = "cascade.accounts"

DELINQUENCY_STARTED = "cascade.accounts.delinquency-started.v1"
DELINQUENCY_UPDATED = "cascade.accounts.delinquency-updated.v1"
BUCKET_CHANGED = "cascade.accounts.bucket-changed.v1"
ACCOUNT_CURED = "cascade.accounts.account-cured.v1"
PAYMENT_APPLIED = "cascade.accounts.payment-applied.v1"
PAYMENT_REVERSED = "cascade.accounts.payment-reversed.v1"
CONTACT_CHANGED = "cascade.accounts.contact-changed.v1"
PAUSE_STARTED = "cascade.accounts.pause-started.v1"
PAUSE_ENDED = "cascade.accounts.pause-ended.v1"
ACCOUNT_CLOSED = "cascade.accounts.account-closed.v1"

Status = Literal["current", "delinquent", "closed"]
# Why figures moved: a business-day close, a late or corrective core-banking event, a pause.
Trigger = Literal["business_day_closed", "correction", "pause"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Delinquency(_Payload):
    """An account's delinquency figures as at `business_date` (null before any close)."""

    business_date: date | None
    status: Status
    days_past_due: int = Field(ge=0)
    bucket: str = Field(description="The label of the DPD range, e.g. `1-29`.")
    arrears_minor: int = Field(
        ge=0, description="Unpaid amounts of installments due before the business date."
    )
    oldest_unpaid_due_date: date | None = None


class _AccountEvent(_Payload):
    account_id: str
    customer_id: str
    product: Product
    currency: Currency
    jurisdiction: Country
    timezone: TimeZone
    language: Language


class DelinquencyStartedV1(_AccountEvent):
    """The account became delinquent: days past due went from 0 to 1 or more."""

    delinquency: Delinquency
    trigger: Trigger
    contact: Customer


class DelinquencyUpdatedV1(_AccountEvent):
    """A delinquent account's figures: at every business-day close, and when corrected."""

    delinquency: Delinquency
    trigger: Trigger


class BucketChangedV1(_AccountEvent):
    """The account moved to another delinquency bucket (`delinquency.bucket`)."""

    from_bucket: str
    delinquency: Delinquency
    trigger: Trigger


class AccountCuredV1(_AccountEvent):
    """A delinquent account is current again: arrears paid, within tolerance, or paused."""

    reason: Literal["paid", "within_tolerance", "paused"]
    delinquency: Delinquency
    trigger: Trigger


class AllocationPart(_Payload):
    installment_id: str
    amount_minor: int = Field(gt=0)


class PaymentAppliedV1(_AccountEvent):
    """A payment counts from its value date on: allocated oldest installment first."""

    payment_id: str
    amount_minor: int = Field(gt=0)
    value_date: date
    allocation: list[AllocationPart]
    credit_minor: int = Field(ge=0, description="Left over after every known installment.")
    delinquency: Delinquency


class PaymentReversedV1(_AccountEvent):
    """A payment that had counted no longer does, from its value date on."""

    payment_id: str
    amount_minor: int = Field(gt=0)
    reversed_on: date
    reason: str
    delinquency: Delinquency


class ContactChangedV1(_AccountEvent):
    """The customer's contact data changed: `contact` is the full, newest snapshot."""

    contact: Customer


class _PauseEvent(_AccountEvent):
    pause_id: str
    start_date: date
    end_date: date | None = Field(description="Exclusive: the first day that counts again.")
    reason: str


class PauseStartedV1(_PauseEvent):
    """A delinquency pause was set: its days do not count as past due."""


class PauseEndedV1(_PauseEvent):
    """A delinquency pause is over (resumed, or its end date was reached)."""


class AccountClosedV1(_AccountEvent):
    """Core banking closed the account; its figures stay as at closing."""

    closed_on: date
    reason: ClosureReason
    delinquency: Delinquency


_TYPES: tuple[tuple[str, type[BaseModel]], ...] = (
    (DELINQUENCY_STARTED, DelinquencyStartedV1),
    (DELINQUENCY_UPDATED, DelinquencyUpdatedV1),
    (BUCKET_CHANGED, BucketChangedV1),
    (ACCOUNT_CURED, AccountCuredV1),
    (PAYMENT_APPLIED, PaymentAppliedV1),
    (PAYMENT_REVERSED, PaymentReversedV1),
    (CONTACT_CHANGED, ContactChangedV1),
    (PAUSE_STARTED, PauseStartedV1),
    (PAUSE_ENDED, PauseEndedV1),
    (ACCOUNT_CLOSED, AccountClosedV1),
)


def accounts_event_types() -> list[EventType]:
    """Returns the event types the accounts service publishes."""
    return [
        EventType(
            type=name,
            model=model,
            subject_field="account_id",
            description=(model.__doc__ or "").strip(),
        )
        for name, model in _TYPES
    ]
