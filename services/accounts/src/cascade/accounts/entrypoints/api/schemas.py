"""The accounts API's bodies: figures and facts only, never the customer's personal data.

Read models are built from the query side's views (`from_attributes`); amounts are in
minor units of the account's currency.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

AccountStatus = Literal["current", "delinquent", "closed"]


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class InstallmentRead(_Read):
    installment_id: str
    due_date: date
    amount_minor: int
    paid_minor: int
    unpaid_minor: int
    status: Literal["paid", "partially_paid", "unpaid"]
    past_due: bool = Field(description="Due before the business date, so part of the arrears")


class AllocationPartRead(_Read):
    installment_id: str
    amount_minor: int


class PaymentRead(_Read):
    payment_id: str
    value_date: date
    amount_minor: int
    status: Literal["pending", "counted", "reversed"] = Field(
        description="pending: its value date is after the business date"
    )
    reversed_on: date | None
    reversal_reason: str | None
    allocation: list[AllocationPartRead] = Field(
        description="The installments a counted payment paid, oldest first"
    )


class PauseRead(_Read):
    pause_id: str
    start_date: date
    end_date: date | None = Field(description="Exclusive; null until resumed")
    reason: str
    active: bool = Field(description="Covers the business date now open")


class AccountSummary(_Read):
    account_id: str
    customer_id: str | None
    product: str
    currency: str
    status: AccountStatus
    days_past_due: int
    bucket: str = Field(description="The label of the delinquency range, e.g. 1-29")
    arrears_minor: int
    oldest_unpaid_due_date: date | None
    business_date: date | None = Field(
        description="The date the figures are at: the last close, or the closing for a "
        "closed account; null before the first business day is closed"
    )


class AccountRead(AccountSummary):
    within_tolerance: bool = Field(description="Arrears at or below the tolerance count as none")
    credit_minor: int = Field(description="Counted payments beyond every installment")
    opened_on: date
    closed_on: date | None
    closure_reason: str | None
    installments: list[InstallmentRead]
    payments: list[PaymentRead]
    pauses: list[PauseRead]


class AccountPage(_Read):
    items: list[AccountSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


class BucketPeriodRead(_Read):
    bucket: str
    entered_on: date
    left_on: date | None


class DelinquencyActionRead(_Read):
    action: Literal["pause", "resume"]
    pause_id: str
    start_date: date
    end_date: date | None
    reason: str | None
    actor: str
    created_at: datetime


class DelinquencyHistoryRead(_Read):
    account_id: str
    buckets: list[BucketPeriodRead] = Field(description="Delinquent buckets only, oldest first")
    actions: list[DelinquencyActionRead] = Field(description="Pauses and resumes, oldest first")


class PauseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_date: date
    end_date: date | None = Field(default=None, description="Exclusive; omit for open-ended")
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ]
