"""Applying a batch of core-banking account events: one transaction, a few statements.

Per account, the opening first, then what was held for it, then the rest; then one
reassessment as at the last closed business date. An event that arrives after the close
that should have counted it thus corrects the figures at once, with corrective events.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters import orm, repository
from cascade.accounts.adapters.held import Incoming, hold, take_held
from cascade.accounts.domain import events as domain_events
from cascade.accounts.domain.account import Account, BadEvent, Closure, Profile, not_assessed
from cascade.accounts.domain.model import Delinquency, Installment, Payment, Policy, Reversal
from cascade.accounts.service_layer.translators import to_envelopes
from cascade.shared.contracts import corebanking as cb
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.inbox import forget
from cascade.shared.messaging.outbox import (
    DeadLetterRoute,
    add_dead_letters_to_outbox,
    add_to_outbox,
)
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.rejections import Rejection, dead_letter_of

Policies = Mapping[str, Policy]


async def apply_account_events(
    session: AsyncSession,
    decoded: Sequence[DecodedEvent],
    policies: Policies,
    dead_letters: DeadLetterRoute,
) -> list[Rejection]:
    """Applies account events; returns those of this batch refused by the contract's rules.

    Held events refused when their account opens are dead-lettered here, through the
    outbox: their records were committed long ago, so nothing would redeliver them if the
    dead letter were lost after this transaction. Their ids leave the inbox with it.
    """
    await repository.lock_for_changes(session)
    as_of = await repository.last_business_date(session)
    by_account: dict[str, list[Incoming]] = defaultdict(list)
    for event in decoded:
        by_account[event.envelope.subject].append(Incoming(event))
    accounts = await repository.load(session, list(by_account))
    opening = [a for a, evs in by_account.items() if a not in accounts and _opens(evs)]
    for account_id, held_events in (await take_held(session, opening)).items():
        # Held first: they were read before this batch, as if the account had been open.
        by_account[account_id] = held_events + by_account[account_id]
    rejections: list[Rejection] = []
    refused_held: list[Rejection] = []
    before: dict[str, Delinquency] = {}
    changed: list[tuple[Account, Envelope]] = []
    for account_id, incoming in by_account.items():
        account = accounts.get(account_id) or repository.new_account(account_id, _any(policies))
        before[account_id] = account.state
        applied, to_hold = _apply_all(account, incoming, policies, as_of, rejections, refused_held)
        await hold(session, to_hold)
        if applied and account.profile is not None:
            account.reassess(as_of, policies[account.profile.product], domain_events.CORRECTION)
            changed.append((account, applied[-1].envelope))
    await repository.save(session, [a for a, _ in changed], before)
    outgoing = [
        pair
        for account, cause in changed
        for pair in to_envelopes(account, account.pending_events, causation=cause)
    ]
    await add_to_outbox(session, orm.outbox, outgoing)
    letters = [dead_letter_of(rejection) for rejection in refused_held]
    await add_dead_letters_to_outbox(session, orm.outbox, dead_letters, letters)
    # Recorded in the inbox when they were held: forgotten, so that a replay applies them.
    refused_ids = [rejection.event.envelope.id for rejection in refused_held]
    await forget(session, orm.inbox, dead_letters.consumer_group, refused_ids)
    return rejections


_APPLY_ORDER = {cb.ACCOUNT_OPENED: 0, cb.ACCOUNT_CLOSED: 2}


def _opens(incoming: Sequence[Incoming]) -> bool:
    return any(i.event.envelope.type == cb.ACCOUNT_OPENED for i in incoming)


def _any(policies: Policies) -> Policy:
    return next(iter(policies.values()))


def _apply_all(
    account: Account,
    incoming: list[Incoming],
    policies: Policies,
    as_of: date | None,
    rejections: list[Rejection],
    refused_held: list[Rejection],
) -> tuple[list[DecodedEvent], list[DecodedEvent]]:
    """Applies the account's events, opening first and closure last; returns (applied, to
    hold). A closure freezes the figures, so every other fact of the batch counts first."""
    ordered = sorted(incoming, key=lambda i: _APPLY_ORDER.get(i.event.envelope.type, 1))
    applied, to_hold = [], []
    for item in ordered:
        event = item.event
        if not account.is_open and event.envelope.type != cb.ACCOUNT_OPENED:
            to_hold.append(event)
            continue
        try:
            if _apply(account, event, policies, as_of):
                applied.append(event)
        except BadEvent as error:
            if item.held is None:
                rejections.append(Rejection(event, error.reason, str(error)))
            else:
                held = item.held
                refused_held.append(
                    Rejection(event, error.reason, str(error), held.origin, held.value)
                )
    return applied, to_hold


def _apply(account: Account, event: DecodedEvent, policies: Policies, as_of: date | None) -> bool:
    payload, envelope = event.payload, event.envelope
    if isinstance(payload, cb.AccountOpened):
        first = account.open(_profile(payload, envelope))
        if first:
            account.state = not_assessed(policies[payload.product])
        return first
    if isinstance(payload, cb.AccountContactChanged):
        customer = payload.customer.model_dump(mode="json", exclude_none=True)
        return account.change_contact(customer, (envelope.time, envelope.id))
    if isinstance(payload, cb.InstallmentDue):
        installment = Installment(payload.installment_id, payload.due_date, payload.amount_minor)
        return account.add_installment(installment, payload.currency)
    if isinstance(payload, cb.PaymentReceived):
        payment = Payment(payload.payment_id, payload.value_date, payload.amount_minor)
        return account.add_payment(payment, payload.currency)
    if isinstance(payload, cb.PaymentReversed):
        reversal = Reversal(payload.payment_id, payload.reversed_on, payload.reason)
        return account.add_reversal(reversal)
    if isinstance(payload, cb.AccountClosed):
        assert account.profile is not None
        policy = policies[account.profile.product]
        return account.close(Closure(payload.closed_on, payload.reason), as_of, policy)
    raise TypeError(f"not an account event: {envelope.type}")


def _profile(payload: cb.AccountOpened, envelope: Envelope) -> Profile:
    return Profile(
        product=payload.product,
        currency=payload.currency,
        opened_on=payload.opened_on,
        customer=payload.customer.model_dump(mode="json", exclude_none=True),
        contact_as_of=(envelope.time, envelope.id),
        opened_digest=digest(payload),
    )


def digest(payload: BaseModel) -> str:
    """Returns a digest of a payload's content, to tell a duplicate from a conflict."""
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def business_date_of(event: DecodedEvent) -> date:
    """Returns the business date a business-day event closes."""
    payload = event.payload
    assert isinstance(payload, cb.BusinessDayClosed)
    return payload.business_date
