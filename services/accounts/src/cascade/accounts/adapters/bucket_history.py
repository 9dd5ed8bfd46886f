"""An account's delinquent buckets over time: the periods entered and left.

Kept for delinquent buckets only, as Fineract's tag history is: becoming current ends a
period, and so does the account's closure.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.domain.account import Account
from cascade.accounts.domain.model import CLOSED, Delinquency


async def save_bucket_history(
    session: AsyncSession, accounts: list[Account], before: dict[str, Delinquency]
) -> None:
    """Records the delinquent buckets the accounts entered and left in this batch."""
    await _save_bucket_moves(session, accounts, before)
    await _end_history_at_closure(session, accounts, before)


async def _save_bucket_moves(
    session: AsyncSession, accounts: list[Account], before: dict[str, Delinquency]
) -> None:
    moved = [
        a for a in accounts
        if a.account_id in before
        and before[a.account_id].bucket != a.state.bucket
        and a.state.as_of
    ]  # fmt: skip
    if not moved:
        return
    # History keeps delinquent buckets only (as Fineract's tag history): current closes a row.
    await session.execute(
        text(
            "UPDATE bucket_history h SET left_on = t.d FROM unnest(CAST(:a AS text[]), "
            "CAST(:d AS date[])) AS t(a, d) WHERE h.account_id = t.a AND h.left_on IS NULL"
        ),
        {"a": [a.account_id for a in moved], "d": [a.state.as_of for a in moved]},
    )
    # Delinquent is one day past due or more: a closed account's status no longer says it,
    # and one that moved bucket in its closing batch still enters that bucket (the closure
    # below ends the period at once).
    entering = [a for a in moved if a.state.days_past_due >= 1]
    if entering:
        await session.execute(
            text(
                "INSERT INTO bucket_history (account_id, bucket, entered_on) "
                "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]), CAST(:d AS date[]))"
            ),
            {
                "a": [a.account_id for a in entering],
                "b": [a.state.bucket for a in entering],
                "d": [a.state.as_of for a in entering],
            },
        )


async def _end_history_at_closure(
    session: AsyncSession, accounts: list[Account], before: dict[str, Delinquency]
) -> None:
    # A closed account keeps its figures, bucket included, but has left collections: its
    # open period ends on the closure date (never before the period began), so that the
    # history's open rows are the accounts in each bucket now.
    closing = [
        (a.account_id, a.closure.closed_on)
        for a in accounts
        if a.closure is not None
        and a.account_id in before
        and before[a.account_id].status != CLOSED
    ]
    if not closing:
        return
    await session.execute(
        text(
            "UPDATE bucket_history h SET left_on = GREATEST(h.entered_on, t.d) FROM "
            "unnest(CAST(:a AS text[]), CAST(:d AS date[])) AS t(a, d) "
            "WHERE h.account_id = t.a AND h.left_on IS NULL"
        ),
        {"a": [a for a, _ in closing], "d": [d for _, d in closing]},
    )
