"""Closing a business day: ageing every past-due account, once per business date.

Business dates only move forward: a repeated or older date is ignored. Accounts whose
payments or reversals take effect on the new date (few) are reassessed in the domain; all
the others are aged by one set-based statement (`adapters.ageing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters import orm, repository
from cascade.accounts.adapters.ageing import age_accounts
from cascade.accounts.domain import events
from cascade.accounts.domain.model import Policy
from cascade.accounts.service_layer.translators import to_envelopes
from cascade.shared.contracts import corebanking as cb
from cascade.shared.logging import get_logger
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.registry import DecodedEvent

log = get_logger(__name__)


async def close_business_day(
    session: AsyncSession, event: DecodedEvent, policies: Mapping[str, Policy], default: Policy
) -> bool:
    """Closes the event's business date; returns False when the date was already passed."""
    payload = event.payload
    assert isinstance(payload, cb.BusinessDayClosed)
    business_date = payload.business_date
    await repository.lock_for_close(session)
    last = await repository.last_business_date(session)
    if last is not None and business_date <= last:
        log.info("business_day.ignored", business_date=str(business_date), last=str(last))
        return False
    written = await _reassess_in_domain(session, event.envelope, business_date, policies)
    correlation = event.envelope.correlationid or event.envelope.id
    aged, aged_events = await age_accounts(
        session,
        business_date=business_date,
        policies=policies,
        default=default,
        causation=event.envelope.id,
        correlation=correlation,
        time=datetime.now(UTC).isoformat(),
    )
    await repository.record_close(
        session, business_date, payload.closed_at, event.envelope.id, aged, written + aged_events
    )
    log.info(
        "business_day.closed",
        business_date=str(business_date),
        accounts_aged=aged,
        events_written=written + aged_events,
    )
    return True


async def _reassess_in_domain(
    session: AsyncSession, cause: Envelope, business_date: date, policies: Mapping[str, Policy]
) -> int:
    """Reassesses accounts with payments, reversals or pause ends on the date; returns events."""
    ended = await repository.end_pauses(session, business_date)
    review = await repository.accounts_to_review(session, business_date)
    accounts = await repository.load(session, sorted(set(review) | set(ended)))
    before = {account_id: account.state for account_id, account in accounts.items()}
    for account_id in review:
        account = accounts[account_id]
        assert account.profile is not None
        account.reassess(business_date, policies[account.profile.product], events.CLOSE)
    for account_id, pauses in ended.items():
        account = accounts[account_id]
        account.pending_events.extend(events.PauseEnded(account_id, p) for p in pauses)
    await repository.save(session, accounts.values(), before)
    outgoing = [
        pair
        for account in accounts.values()
        for pair in to_envelopes(account, account.pending_events, causation=cause)
    ]
    await add_to_outbox(session, orm.outbox, outgoing)
    return len(outgoing)
