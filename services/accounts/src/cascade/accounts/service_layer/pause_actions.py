"""Pausing and resuming an account's delinquency (supervisors, through the API).

Each action is appended to `delinquency_action` (never edited), applied to the account in
the domain, and its events go to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters import orm, repository
from cascade.accounts.domain.account import Account
from cascade.accounts.domain.model import Delinquency, Pause, Policy
from cascade.accounts.domain.pauses import PauseRefused, resume_pause, start_pause
from cascade.accounts.service_layer.translators import to_envelopes
from cascade.shared.messaging.outbox import add_to_outbox


class AccountNotFound(Exception):
    """No opened account with this id."""


async def pause_account(
    session: AsyncSession,
    account_id: str,
    *,
    start_date: date,
    end_date: date | None,
    reason: str,
    actor: str,
    policies: Mapping[str, Policy],
) -> Pause:
    """Pauses the account's delinquency from `start_date`; returns the new pause."""
    account, as_of = await _locked(session, account_id)
    before = {account_id: account.state}
    pause = Pause(str(uuid.uuid4()), start_date, end_date, reason)
    start_pause(account, pause, as_of=as_of, policy=_policy(account, policies))
    await _append_action(session, account_id, "pause", pause, actor)
    await _save(session, account, before)
    return pause


async def resume_account(
    session: AsyncSession,
    account_id: str,
    pause_id: str,
    *,
    actor: str,
    policies: Mapping[str, Policy],
) -> Pause:
    """Ends an active pause on the current business date; returns the pause as it stands."""
    account, as_of = await _locked(session, account_id)
    if as_of is None:
        raise PauseRefused("no business day has been closed yet, so there is no date to resume on")
    before = {account_id: account.state}
    today = as_of + timedelta(days=1)  # the business day now open
    resumed = resume_pause(
        account, pause_id, on=today, as_of=as_of, policy=_policy(account, policies)
    )
    await _append_action(session, account_id, "resume", resumed, actor)
    await session.execute(
        text("UPDATE delinquency_pause SET ended_announced = true WHERE pause_id = :p"),
        {"p": pause_id},
    )
    await _save(session, account, before)
    return resumed


async def _locked(session: AsyncSession, account_id: str) -> tuple[Account, date | None]:
    await repository.lock_for_changes(session)
    as_of = await repository.last_business_date(session)
    account = (await repository.load(session, [account_id])).get(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account, as_of


def _policy(account: Account, policies: Mapping[str, Policy]) -> Policy:
    assert account.profile is not None
    return policies[account.profile.product]


async def _append_action(
    session: AsyncSession, account_id: str, action: str, pause: Pause, actor: str
) -> None:
    await session.execute(
        orm.delinquency_action.insert().values(
            account_id=account_id,
            action=action,
            pause_id=pause.pause_id,
            start_date=pause.start_date,
            end_date=pause.end_date,
            reason=pause.reason,
            actor=actor,
        )
    )


async def _save(session: AsyncSession, account: Account, before: dict[str, Delinquency]) -> None:
    await repository.save(session, [account], before)
    outgoing = to_envelopes(account, account.pending_events, causation=None)
    await add_to_outbox(session, orm.outbox, outgoing)
