"""Loading accounts into the domain and saving them back, a batch of accounts at a time.

Every statement takes arrays (`= ANY(:ids)`, `unnest`), so a fetched batch of events costs
a handful of round trips however many accounts it touches.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters.bucket_history import save_bucket_history
from cascade.accounts.domain.account import Account, Closure, Profile, not_assessed
from cascade.accounts.domain.model import Delinquency, Installment, Pause, Payment, Policy, Reversal
from cascade.shared.messaging.tables import key_slot

# Business-day closes take this lock exclusively, event batches and API writes shared: a
# close never interleaves with a batch that reads the last closed date.
_CLOSE_LOCK = 0x0ACC_0C15


async def lock_for_changes(session: AsyncSession) -> None:
    """Waits for any business-day close in flight; holds it off until the commit."""
    await session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _CLOSE_LOCK})


async def lock_for_close(session: AsyncSession) -> None:
    """Waits for the event batches in flight; holds new ones off until the commit."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CLOSE_LOCK})


async def last_business_date(session: AsyncSession) -> date | None:
    """Returns the last business date closed, or None before the first close."""
    found = await session.scalar(text("SELECT max(business_date) FROM business_day"))
    return found if isinstance(found, date) else None


async def load(
    session: AsyncSession, ids: Sequence[str], *, for_update: bool = True
) -> dict[str, Account]:
    """Returns the opened accounts among `ids` with all their facts, locked unless reading."""
    lock = " FOR UPDATE OF a" if for_update else ""
    rows = await session.execute(
        text(
            "SELECT a.*, c.customer, c.contact_time, c.contact_event_id FROM account a "  # noqa: S608
            "JOIN account_contact c USING (account_id) WHERE a.account_id = ANY(:ids) "
            f"ORDER BY a.account_id{lock}"
        ),
        {"ids": list(ids)},
    )
    accounts = {row.account_id: _account(row) for row in rows}
    found = list(accounts)
    if not found:
        return accounts
    for row in await _rows(session, "installment", found):
        accounts[row.account_id].installments[row.installment_id] = Installment(
            row.installment_id, row.due_date, row.amount_minor
        )
    for row in await _rows(session, "payment", found):
        account = accounts[row.account_id]
        account.payments[row.payment_id] = Payment(row.payment_id, row.value_date, row.amount_minor)
        if row.applied:
            account.applied_payments.add(row.payment_id)
    for row in await _rows(session, "payment_reversal", found):
        account = accounts[row.account_id]
        account.reversals[row.payment_id] = Reversal(row.payment_id, row.reversed_on, row.reason)
        if row.effective:
            account.effective_reversals.add(row.payment_id)
    for row in await _rows(session, "delinquency_pause", found):
        accounts[row.account_id].pauses[row.pause_id] = Pause(
            row.pause_id, row.start_date, row.end_date, row.reason
        )
    return accounts


def new_account(account_id: str, policy: Policy) -> Account:
    """Returns an account not opened yet (nothing stored)."""
    return Account(account_id, not_assessed(policy))


async def _rows(session: AsyncSession, table: str, ids: list[str]) -> Sequence[Any]:
    result = await session.execute(
        text(f"SELECT * FROM {table} WHERE account_id = ANY(:ids)"),  # noqa: S608 - our tables
        {"ids": ids},
    )
    return result.all()


def _account(row: Any) -> Account:
    state = Delinquency(
        row.as_of_date,
        row.status,
        row.days_past_due,
        row.bucket,
        row.arrears_minor,
        row.oldest_unpaid_due_date,
        row.unpaid_since,
        row.counted_paid_minor,
        row.within_tolerance,
    )
    profile = Profile(
        row.product,
        row.currency,
        row.opened_on,
        row.customer,
        (row.contact_time, row.contact_event_id),
        row.opened_digest,
    )
    closure = Closure(row.closed_on, row.closure_reason) if row.closed_on else None
    return Account(row.account_id, state, profile=profile, closure=closure)


async def save(
    session: AsyncSession, accounts: Iterable[Account], before: dict[str, Delinquency]
) -> None:
    """Writes the accounts' profiles, figures, facts and bucket history."""
    opened = [a for a in accounts if a.profile is not None]
    if not opened:
        return
    await _save_accounts(session, opened)
    await _save_contacts(session, opened)
    await _save_facts(session, opened)
    await save_bucket_history(session, opened, before)


async def _save_accounts(session: AsyncSession, accounts: list[Account]) -> None:
    columns: dict[str, list[Any]] = defaultdict(list)
    for account in accounts:
        profile, state, closure = account.profile, account.state, account.closure
        assert profile is not None
        values = {
            "account_id": account.account_id,
            "product": profile.product,
            "currency": profile.currency,
            "opened_on": profile.opened_on,
            "opened_digest": profile.opened_digest,
            "key_slot": key_slot(account.account_id),
            "customer_id": profile.attribute("customer_id"),
            "jurisdiction": profile.attribute("jurisdiction"),
            "timezone": profile.attribute("timezone"),
            "language": profile.attribute("preferred_language"),
            "status": state.status,
            "as_of_date": state.as_of,
            "days_past_due": state.days_past_due,
            "bucket": state.bucket,
            "arrears_minor": state.arrears_minor,
            "oldest_unpaid_due_date": state.oldest_unpaid_due_date,
            "within_tolerance": state.within_tolerance,
            "unpaid_since": state.unpaid_since,
            "counted_paid_minor": state.counted_paid_minor,
            "closed_on": closure.closed_on if closure else None,
            "closure_reason": closure.reason if closure else None,
        }
        for name, value in values.items():
            columns[name].append(value)
    await session.execute(text(_UPSERT_ACCOUNT), dict(columns))


_ACCOUNT_TYPES = {
    "account_id": "text", "product": "text", "currency": "text", "opened_on": "date",
    "opened_digest": "text", "key_slot": "smallint", "customer_id": "text",
    "jurisdiction": "text", "timezone": "text", "language": "text", "status": "text",
    "as_of_date": "date",
    "days_past_due": "int", "bucket": "text", "arrears_minor": "bigint",
    "oldest_unpaid_due_date": "date", "within_tolerance": "boolean", "unpaid_since": "date",
    "counted_paid_minor": "bigint", "closed_on": "date", "closure_reason": "text",
}  # fmt: skip


def _upsert_account_sql() -> str:
    names = list(_ACCOUNT_TYPES)
    arrays = ", ".join(f"CAST(:{n} AS {t}[])" for n, t in _ACCOUNT_TYPES.items())
    select = ", ".join(names)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    return (
        f"INSERT INTO account ({', '.join(names)}) "  # noqa: S608 - fixed column names
        f"SELECT {select} FROM unnest({arrays}) AS t({', '.join(names)}) "
        f"ON CONFLICT (account_id) DO UPDATE SET {updates}, updated_at = now()"
    )


_UPSERT_ACCOUNT = _upsert_account_sql()


async def _save_contacts(session: AsyncSession, accounts: list[Account]) -> None:
    profiles = [(a.account_id, a.profile) for a in accounts if a.profile is not None]
    await session.execute(
        text(
            "INSERT INTO account_contact (account_id, customer, contact_time, contact_event_id) "
            "SELECT a, CAST(c AS jsonb), t, e FROM unnest(CAST(:a AS text[]), CAST(:c AS text[]), "
            "CAST(:t AS timestamptz[]), CAST(:e AS text[])) AS s(a, c, t, e) "
            "ON CONFLICT (account_id) DO UPDATE SET customer = excluded.customer, "
            "contact_time = excluded.contact_time, contact_event_id = excluded.contact_event_id "
            # Only a newer snapshot is written: most batches leave the contact as it was.
            "WHERE account_contact.contact_event_id <> excluded.contact_event_id"
        ),
        {
            "a": [a for a, _ in profiles],
            "c": [json.dumps(p.customer, ensure_ascii=False) for _, p in profiles if p],
            "t": [p.contact_as_of[0] for _, p in profiles if p],
            "e": [p.contact_as_of[1] for _, p in profiles if p],
        },
    )


async def _save_facts(session: AsyncSession, accounts: list[Account]) -> None:
    installments = [(a.account_id, i) for a in accounts for i in a.installments.values()]
    if installments:
        await session.execute(
            text(
                "INSERT INTO installment (account_id, installment_id, due_date, amount_minor) "
                "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:i AS text[]), "
                "CAST(:d AS date[]), CAST(:m AS bigint[])) ON CONFLICT DO NOTHING"
            ),
            {
                "a": [a for a, _ in installments],
                "i": [i.installment_id for _, i in installments],
                "d": [i.due_date for _, i in installments],
                "m": [i.amount_minor for _, i in installments],
            },
        )
    await _save_payments(session, accounts)
    await _save_reversals(session, accounts)
    await _save_pauses(session, accounts)


async def _save_payments(session: AsyncSession, accounts: list[Account]) -> None:
    rows = []
    for account in accounts:
        pending = account.pending_payment_ids()  # once per account, not once per payment
        rows += [
            (
                account.account_id,
                p,
                p.payment_id in pending,
                p.payment_id in account.applied_payments,
            )
            for p in account.payments.values()
        ]
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO payment (account_id, payment_id, value_date, amount_minor, pending, "
            "applied) SELECT * FROM unnest(CAST(:a AS text[]), CAST(:p AS text[]), "
            "CAST(:d AS date[]), CAST(:m AS bigint[]), CAST(:pending AS boolean[]), "
            "CAST(:applied AS boolean[])) ON CONFLICT (account_id, payment_id) DO UPDATE "
            "SET pending = excluded.pending, applied = excluded.applied"
        ),
        {
            "a": [r[0] for r in rows],
            "p": [r[1].payment_id for r in rows],
            "d": [r[1].value_date for r in rows],
            "m": [r[1].amount_minor for r in rows],
            "pending": [r[2] for r in rows],
            "applied": [r[3] for r in rows],
        },
    )


async def _save_reversals(session: AsyncSession, accounts: list[Account]) -> None:
    rows = [
        (a.account_id, r, r.payment_id in a.effective_reversals)
        for a in accounts
        for r in a.reversals.values()
    ]
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO payment_reversal (account_id, payment_id, reversed_on, reason, effective) "
            "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:p AS text[]), CAST(:d AS date[]), "
            "CAST(:r AS text[]), CAST(:e AS boolean[])) ON CONFLICT (account_id, payment_id) "
            "DO UPDATE SET effective = excluded.effective"
        ),
        {
            "a": [r[0] for r in rows],
            "p": [r[1].payment_id for r in rows],
            "d": [r[1].reversed_on for r in rows],
            "r": [r[1].reason for r in rows],
            "e": [r[2] for r in rows],
        },
    )


async def _save_pauses(session: AsyncSession, accounts: list[Account]) -> None:
    rows = [(a.account_id, p) for a in accounts for p in a.pauses.values()]
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO delinquency_pause (pause_id, account_id, start_date, end_date, reason) "
            "SELECT * FROM unnest(CAST(:p AS text[]), CAST(:a AS text[]), CAST(:s AS date[]), "
            "CAST(:e AS date[]), CAST(:r AS text[])) ON CONFLICT (pause_id) "
            "DO UPDATE SET end_date = excluded.end_date"
        ),
        {
            "p": [p.pause_id for _, p in rows],
            "a": [a for a, _ in rows],
            "s": [p.start_date for _, p in rows],
            "e": [p.end_date for _, p in rows],
            "r": [p.reason for _, p in rows],
        },
    )


async def accounts_to_review(session: AsyncSession, business_date: date) -> list[str]:
    """Returns open accounts whose payments or reversals take effect by `business_date`."""
    rows = await session.execute(
        text(
            "SELECT p.account_id FROM payment p WHERE p.pending AND p.value_date <= :d "
            "UNION SELECT r.account_id FROM payment_reversal r JOIN payment p "
            "USING (account_id, payment_id) WHERE NOT r.effective AND r.reversed_on <= :d"
        ),
        {"d": business_date},
    )
    ids = [row[0] for row in rows]
    if not ids:
        return []
    open_ids = await session.execute(
        text("SELECT account_id FROM account WHERE account_id = ANY(:ids) AND status <> 'closed'"),
        {"ids": ids},
    )
    return sorted(row[0] for row in open_ids)


async def end_pauses(session: AsyncSession, business_date: date) -> dict[str, list[Pause]]:
    """Marks pauses that are over by the day after `business_date` announced; returns them."""
    rows = await session.execute(
        text(
            "UPDATE delinquency_pause SET ended_announced = true WHERE NOT ended_announced "
            "AND end_date <= CAST(:d AS date) + 1 "
            "RETURNING account_id, pause_id, start_date, end_date, reason"
        ),
        {"d": business_date},
    )
    ended: dict[str, list[Pause]] = defaultdict(list)
    for row in rows:
        ended[row.account_id].append(Pause(row.pause_id, row.start_date, row.end_date, row.reason))
    return dict(ended)


async def record_close(
    session: AsyncSession,
    business_date: date,
    closed_at: Any,
    event_id: str,
    aged: int,
    written: int,
) -> None:
    """Records that `business_date` was closed (a repeated date is then ignored)."""
    await session.execute(
        text(
            "INSERT INTO business_day (business_date, closed_at, event_id, accounts_aged, "
            "events_written) VALUES (:d, :closed_at, :event_id, :aged, :written)"
        ),
        {
            "d": business_date,
            "closed_at": closed_at,
            "event_id": event_id,
            "aged": aged,
            "written": written,
        },
    )
