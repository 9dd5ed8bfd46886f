"""The read side of the accounts API: figures, facts and history, never personal data.

The figures are the stored ones, as published downstream. What each installment has been
paid, and where each payment went, comes from the domain's own allocation as at the same
business date, so the detail always adds up to the figures shown.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters import orm, repository
from cascade.accounts.domain.account import Account
from cascade.accounts.domain.model import CLOSED, Allocation, Pause, allocate, counted_payments
from cascade.accounts.service_layer.pause_actions import AccountNotFound

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,400}$")


class BadCursor(ValueError):
    """A page cursor this API did not issue; the message says what to do instead."""


@dataclass(frozen=True)
class InstallmentView:
    installment_id: str
    due_date: date
    amount_minor: int
    paid_minor: int
    unpaid_minor: int
    status: str  # paid | partially_paid | unpaid
    past_due: bool


@dataclass(frozen=True)
class AllocationPart:
    installment_id: str
    amount_minor: int


@dataclass(frozen=True)
class PaymentView:
    payment_id: str
    value_date: date
    amount_minor: int
    status: str  # pending | counted | reversed
    reversed_on: date | None
    reversal_reason: str | None
    allocation: tuple[AllocationPart, ...]


@dataclass(frozen=True)
class PauseView:
    pause_id: str
    start_date: date
    end_date: date | None
    reason: str
    active: bool


@dataclass(frozen=True)
class AccountSummaryView:
    account_id: str
    customer_id: str | None
    product: str
    currency: str
    status: str
    days_past_due: int
    bucket: str
    arrears_minor: int
    oldest_unpaid_due_date: date | None
    business_date: date | None


@dataclass(frozen=True)
class AccountView(AccountSummaryView):
    within_tolerance: bool
    credit_minor: int
    opened_on: date
    closed_on: date | None
    closure_reason: str | None
    installments: tuple[InstallmentView, ...]
    payments: tuple[PaymentView, ...]
    pauses: tuple[PauseView, ...]


@dataclass(frozen=True)
class AccountPage:
    items: tuple[AccountSummaryView, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class BucketPeriod:
    bucket: str
    entered_on: date
    left_on: date | None


@dataclass(frozen=True)
class ActionView:
    action: str  # pause | resume
    pause_id: str
    start_date: date
    end_date: date | None
    reason: str | None
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class HistoryView:
    account_id: str
    buckets: tuple[BucketPeriod, ...]
    actions: tuple[ActionView, ...]


async def account(session: AsyncSession, account_id: str) -> AccountView:
    """Returns the account's figures and facts; raises AccountNotFound for an unknown id."""
    # One snapshot for every statement, without locks: the figures and the business date
    # read are those of one moment, and a read never waits for a close.
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    found = (await repository.load(session, [account_id], for_update=False)).get(account_id)
    if found is None:
        raise AccountNotFound(account_id)
    last = await repository.last_business_date(session)
    return _account_view(found, last)


async def current_business_day(session: AsyncSession) -> date | None:
    """Returns the business date now open (the day after the last close), if any."""
    last = await repository.last_business_date(session)
    return last + timedelta(days=1) if last is not None else None


def pause_view(pause: Pause, today: date | None, *, account_closed: bool = False) -> PauseView:
    """Returns the pause as the API shows it; a closed account has no active pause."""
    active = today is not None and not account_closed and pause.active_on(today)
    return PauseView(pause.pause_id, pause.start_date, pause.end_date, pause.reason, active)


async def accounts(
    session: AsyncSession,
    *,
    status: str | None = None,
    bucket: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AccountPage:
    """Returns a page of accounts in account_id order, after the one `cursor` names."""
    a = orm.account.c
    last_close = select(func.max(orm.business_day.c.business_date)).scalar_subquery()
    # One statement, so the business date and the figures come from the same snapshot; a
    # closed account keeps its figures as at closing, so it keeps their date too.
    business_date = case((a.status == CLOSED, a.as_of_date), else_=last_close)
    query = select(
        a.account_id,
        a.customer_id,
        *(a.product, a.currency, a.status, a.days_past_due, a.bucket, a.arrears_minor),
        a.oldest_unpaid_due_date,
        business_date.label("business_date"),
    ).order_by(a.account_id)
    if status is not None:
        query = query.where(a.status == status)
    if bucket is not None:
        query = query.where(a.bucket == bucket)
    if cursor is not None:
        query = query.where(a.account_id > decode_cursor(cursor))
    size = max(1, min(limit, MAX_LIMIT))
    rows = (await session.execute(query.limit(size + 1))).all()
    items = tuple(AccountSummaryView(**row._mapping) for row in rows[:size])
    more = len(rows) > size
    return AccountPage(items, encode_cursor(items[-1].account_id) if more else None)


async def history(session: AsyncSession, account_id: str) -> HistoryView:
    """Returns the account's delinquent buckets over time and its pause/resume actions."""
    known = await session.scalar(
        select(orm.account.c.account_id).where(orm.account.c.account_id == account_id)
    )
    if known is None:
        raise AccountNotFound(account_id)
    h, d = orm.bucket_history.c, orm.delinquency_action.c
    periods = await session.execute(
        select(h.bucket, h.entered_on, h.left_on).where(h.account_id == account_id).order_by(h.id)
    )
    actions = await session.execute(
        select(d.action, d.pause_id, d.start_date, d.end_date, d.reason, d.actor, d.created_at)
        .where(d.account_id == account_id)
        .order_by(d.id)
    )
    return HistoryView(
        account_id,
        tuple(BucketPeriod(*row) for row in periods),
        tuple(ActionView(*row) for row in actions),
    )


def encode_cursor(account_id: str) -> str:
    """Returns the opaque cursor of the page that starts after `account_id`."""
    return base64.urlsafe_b64encode(account_id.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str:
    """Returns the account_id a cursor names; raises BadCursor if this API did not issue it."""
    refusal = BadCursor(
        "the cursor is not one this API issued: pass next_cursor from the previous page "
        "unchanged, or leave cursor out to start from the first page"
    )
    if not _CURSOR.match(cursor):
        raise refusal
    try:
        account_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise refusal from None
    if not account_id or not account_id.isprintable():
        raise refusal  # an account id never holds control characters (nor NUL)
    return account_id


def _account_view(found: Account, last_close: date | None) -> AccountView:
    profile, state, closure = found.profile, found.state, found.closure
    assert profile is not None  # the repository loads opened accounts only
    as_of = state.as_of if found.is_closed else last_close
    allocation = allocate(
        found.installments.values(),
        counted_payments(found.payments.values(), found.reversals, as_of),
    )
    today = last_close + timedelta(days=1) if last_close is not None else None
    customer_id = profile.customer.get("customer_id")
    return AccountView(
        account_id=found.account_id,
        customer_id=str(customer_id) if customer_id is not None else None,
        product=profile.product,
        currency=profile.currency,
        status=state.status,
        days_past_due=state.days_past_due,
        bucket=state.bucket,
        arrears_minor=state.arrears_minor,
        oldest_unpaid_due_date=state.oldest_unpaid_due_date,
        business_date=as_of,
        within_tolerance=state.within_tolerance,
        credit_minor=allocation.credit_minor,
        opened_on=profile.opened_on,
        closed_on=closure.closed_on if closure else None,
        closure_reason=closure.reason if closure else None,
        installments=_installments(found, allocation, as_of),
        payments=_payments(found, allocation, as_of),
        pauses=tuple(
            pause_view(p, today, account_closed=found.is_closed)
            for p in sorted(found.pauses.values(), key=lambda p: (p.start_date, p.pause_id))
        ),
    )


def _installments(
    found: Account, allocation: Allocation, as_of: date | None
) -> tuple[InstallmentView, ...]:
    views = []
    for installment in sorted(found.installments.values(), key=lambda i: i.order):
        paid = allocation.paid_by_installment.get(installment.installment_id, 0)
        unpaid = installment.amount_minor - paid
        status = "paid" if unpaid <= 0 else "partially_paid" if paid else "unpaid"
        past_due = as_of is not None and installment.due_date < as_of
        views.append(
            InstallmentView(
                installment.installment_id,
                installment.due_date,
                installment.amount_minor,
                paid,
                unpaid,
                status,
                past_due,
            )
        )
    return tuple(views)


def _payments(
    found: Account, allocation: Allocation, as_of: date | None
) -> tuple[PaymentView, ...]:
    views = []
    for payment in sorted(found.payments.values(), key=lambda p: p.order):
        # A reversal is shown once core banking reports it, and counts from its date on.
        reversal = found.reversals.get(payment.payment_id)
        if as_of is not None and reversal is not None and reversal.reversed_on <= as_of:
            status = "reversed"
        elif as_of is None or payment.value_date > as_of:
            status = "pending"
        else:
            status = "counted"
        parts = allocation.parts_by_payment.get(payment.payment_id, ())
        views.append(
            PaymentView(
                payment.payment_id,
                payment.value_date,
                payment.amount_minor,
                status,
                reversal.reversed_on if reversal else None,
                reversal.reason if reversal else None,
                tuple(AllocationPart(i, amount) for i, amount in parts),
            )
        )
    return tuple(views)
