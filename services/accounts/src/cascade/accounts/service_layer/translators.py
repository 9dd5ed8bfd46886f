"""Domain events to the integration events of `accounts.delinquency.v1`: the only place
that knows both shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from cascade.accounts.domain import events
from cascade.accounts.domain.account import Account, Profile
from cascade.accounts.domain.model import Delinquency, Pause
from cascade.shared.contracts import accounts as contract
from cascade.shared.messaging.envelope import Envelope, new_envelope


def to_envelopes(
    account: Account, domain_events: Iterable[events.DomainEvent], *, causation: Envelope | None
) -> list[tuple[str, Envelope]]:
    """Returns (topic, envelope) pairs for the outbox, one per domain event."""
    profile = account.profile
    if profile is None:
        return []
    correlation = (causation.correlationid or causation.id) if causation else None
    return [
        (
            contract.TOPIC,
            new_envelope(
                type=type_name,
                source=contract.SOURCE,
                subject=account.account_id,
                data=payload,
                correlationid=correlation,
                causationid=causation.id if causation else None,
            ),
        )
        for type_name, payload in (_translate(event, account, profile) for event in domain_events)
    ]


def account_fields(account_id: str, profile: Profile) -> dict[str, Any]:
    """Returns the fields every accounts event carries."""
    return {
        "account_id": account_id,
        "customer_id": profile.attribute("customer_id"),
        "product": profile.product,
        "currency": profile.currency,
        "jurisdiction": profile.attribute("jurisdiction"),
        "timezone": profile.attribute("timezone"),
        "language": profile.attribute("preferred_language"),
    }


def delinquency(state: Delinquency) -> contract.Delinquency:
    """Returns the figures as the contract states them."""
    return contract.Delinquency(
        business_date=state.as_of,
        status=state.status,
        days_past_due=state.days_past_due,
        bucket=state.bucket,
        arrears_minor=state.arrears_minor,
        oldest_unpaid_due_date=state.oldest_unpaid_due_date,
    )


def _pause(pause: Pause) -> dict[str, Any]:
    return {
        "pause_id": pause.pause_id,
        "start_date": pause.start_date,
        "end_date": pause.end_date,
        "reason": pause.reason,
    }


_Builder = Callable[[Any, dict[str, Any], Profile], tuple[str, BaseModel]]

_BUILDERS: dict[type[Any], _Builder] = {
    events.DelinquencyStarted: lambda e, base, profile: (
        contract.DELINQUENCY_STARTED,
        contract.DelinquencyStartedV1(
            **base,
            delinquency=delinquency(e.delinquency),
            trigger=e.trigger,
            contact=profile.customer,
        ),
    ),
    events.DelinquencyUpdated: lambda e, base, _: (
        contract.DELINQUENCY_UPDATED,
        contract.DelinquencyUpdatedV1(
            **base, delinquency=delinquency(e.delinquency), trigger=e.trigger
        ),
    ),
    events.BucketChanged: lambda e, base, _: (
        contract.BUCKET_CHANGED,
        contract.BucketChangedV1(
            **base,
            from_bucket=e.from_bucket,
            delinquency=delinquency(e.delinquency),
            trigger=e.trigger,
        ),
    ),
    events.AccountCured: lambda e, base, _: (
        contract.ACCOUNT_CURED,
        contract.AccountCuredV1(
            **base, reason=e.reason, delinquency=delinquency(e.delinquency), trigger=e.trigger
        ),
    ),
    events.PaymentApplied: lambda e, base, _: (
        contract.PAYMENT_APPLIED,
        contract.PaymentAppliedV1(
            **base,
            payment_id=e.payment_id,
            amount_minor=e.amount_minor,
            value_date=e.value_date,
            allocation=[
                contract.AllocationPart(installment_id=i, amount_minor=m) for i, m in e.allocation
            ],
            credit_minor=e.credit_minor,
            delinquency=delinquency(e.delinquency),
        ),
    ),
    events.PaymentReversed: lambda e, base, _: (
        contract.PAYMENT_REVERSED,
        contract.PaymentReversedV1(
            **base,
            payment_id=e.payment_id,
            amount_minor=e.amount_minor,
            reversed_on=e.reversed_on,
            reason=e.reason,
            delinquency=delinquency(e.delinquency),
        ),
    ),
    events.ContactChanged: lambda e, base, profile: (
        contract.CONTACT_CHANGED,
        contract.ContactChangedV1(**base, contact=profile.customer),
    ),
    events.PauseStarted: lambda e, base, _: (
        contract.PAUSE_STARTED,
        contract.PauseStartedV1(**base, **_pause(e.pause)),
    ),
    events.PauseEnded: lambda e, base, _: (
        contract.PAUSE_ENDED,
        contract.PauseEndedV1(**base, **_pause(e.pause)),
    ),
    events.AccountClosed: lambda e, base, _: (
        contract.ACCOUNT_CLOSED,
        contract.AccountClosedV1(
            **base,
            closed_on=e.closed_on,
            reason=e.reason,
            delinquency=delinquency(e.delinquency),
        ),
    ),
}


def _translate(
    event: events.DomainEvent, account: Account, profile: Profile
) -> tuple[str, BaseModel]:
    return _BUILDERS[type(event)](event, account_fields(account.account_id, profile), profile)
