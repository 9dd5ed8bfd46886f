"""The payloads of core banking's events, exactly as the fixed inbound contract states them.

`corebanking-contract.md` is external and fixed: these models accept what it allows and
refuse what it calls a bad event. Unknown extra fields are ignored (tolerant reader).
Validation messages name fields and rules, never values: payloads carry personal data.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
)

from cascade.shared.messaging.envelope import Timestamp
from cascade.shared.messaging.registry import EventType

ACCOUNT_OPENED = "corebanking.account.opened"
ACCOUNT_CONTACT_CHANGED = "corebanking.account.contact-changed"
INSTALLMENT_DUE = "corebanking.installment.due"
PAYMENT_RECEIVED = "corebanking.payment.received"
PAYMENT_REVERSED = "corebanking.payment.reversed"
ACCOUNT_CLOSED = "corebanking.account.closed"
BUSINESS_DAY_CLOSED = "corebanking.business-day.closed"

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Zone files that exist on disk but are not IANA zone names.
_NOT_IANA = frozenset({"localtime"})


def _strict_iso_date(value: object) -> object:
    """Parse only `YYYY-MM-DD` text: pydantic alone would take timestamps and `20260205`."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be an ISO 8601 date string (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date") from None


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_IANA


def _iana_zone(value: str) -> str:
    """Accept only a time zone name the IANA database (as zoneinfo sees it) knows."""
    if value not in _iana_zones():
        raise ValueError("must be an IANA time zone name")
    return value


NonEmpty = Annotated[str, StringConstraints(min_length=1)]
IsoDate = Annotated[date, BeforeValidator(_strict_iso_date)]
# Minor units; the upper bound is PostgreSQL's bigint, so no valid amount fails on storage.
AmountMinor = Annotated[StrictInt, Field(gt=0, le=2**63 - 1)]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217 currency code.")
]
Country = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), Field(description="ISO 3166-1 alpha-2 code.")
]
TimeZone = Annotated[
    str, AfterValidator(_iana_zone), Field(description="IANA time zone, e.g. Asia/Shanghai.")
]
Product = Literal["credit_card", "personal_loan", "auto_loan", "mortgage"]
Language = Literal["zh-CN", "en"]
ClosureReason = Literal["paid_off", "charged_off", "transferred"]


class _Payload(BaseModel):
    # Tolerant reader: core banking may add fields; they are ignored, never refused.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PostalAddress(_Payload):
    """A postal address of the customer."""

    lines: list[NonEmpty] = Field(min_length=1)
    city: str | None = None
    postal_code: str | None = None
    country: Country


class Customer(_Payload):
    """The account holder, as a full snapshot."""

    customer_id: NonEmpty
    full_name: NonEmpty
    national_id: NonEmpty
    phone: str | None = None
    email: str | None = None
    postal_address: PostalAddress | None = None
    preferred_language: Language
    timezone: TimeZone
    jurisdiction: Country


class AccountOpened(_Payload):
    """Core banking opened an account; its currency is fixed from then on."""

    account_id: NonEmpty
    product: Product
    currency: Currency
    opened_on: IsoDate
    customer: Customer


class AccountContactChanged(_Payload):
    """The customer's contact data changed; `customer` is a full snapshot, not a delta."""

    account_id: NonEmpty
    customer: Customer


class InstallmentDue(_Payload):
    """An installment of the account falls due on `due_date`."""

    account_id: NonEmpty
    installment_id: NonEmpty
    due_date: IsoDate
    amount_minor: AmountMinor
    currency: Currency


class PaymentReceived(_Payload):
    """A payment was booked to the account; it counts from `value_date` on."""

    account_id: NonEmpty
    payment_id: NonEmpty
    amount_minor: AmountMinor
    currency: Currency
    value_date: IsoDate


class PaymentReversed(_Payload):
    """A payment was reversed; it no longer counts, from its value date on."""

    account_id: NonEmpty
    payment_id: NonEmpty
    reversed_on: IsoDate
    reason: str


class AccountClosed(_Payload):
    """Core banking closed the account."""

    account_id: NonEmpty
    closed_on: IsoDate
    reason: ClosureReason


class BusinessDayClosed(_Payload):
    """Core banking closed business date `business_date`; day-granular logic follows it."""

    business_date: IsoDate
    closed_at: Timestamp


_ACCOUNT_EVENTS: tuple[tuple[str, type[BaseModel]], ...] = (
    (ACCOUNT_OPENED, AccountOpened),
    (ACCOUNT_CONTACT_CHANGED, AccountContactChanged),
    (INSTALLMENT_DUE, InstallmentDue),
    (PAYMENT_RECEIVED, PaymentReceived),
    (PAYMENT_REVERSED, PaymentReversed),
    (ACCOUNT_CLOSED, AccountClosed),
)


def corebanking_event_types() -> list[EventType]:
    """Return the event types of the core-banking contract."""
    account_types = [
        EventType(type=name, model=model, subject_field="account_id", description=_doc(model))
        for name, model in _ACCOUNT_EVENTS
    ]
    business_day = EventType(
        type=BUSINESS_DAY_CLOSED,
        model=BusinessDayClosed,
        subject_field="business_date",
        description=_doc(BusinessDayClosed),
    )
    return [*account_types, business_day]


def _doc(model: type[Any]) -> str:
    return (model.__doc__ or "").strip()
