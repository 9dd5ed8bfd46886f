"""The accounts service's consumer: core banking's events in, one handler per batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters.repository import lock_for_close
from cascade.accounts.domain.model import Policy
from cascade.accounts.service_layer.close import close_business_day
from cascade.accounts.service_layer.ingest import apply_account_events, business_date_of
from cascade.shared.contracts import corebanking as cb
from cascade.shared.messaging.consumer import BatchHandler, ConsumerConfig
from cascade.shared.messaging.outbox import DeadLetterRoute
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry
from cascade.shared.messaging.rejections import Rejection
from cascade.shared.messaging.topology import consumed_by, dead_letter_topic

GROUP_ID = "accounts"
SERVICE_VERSION = "0.1.0"  # as the app reports it (create_service_app's version)


def consumer_config(
    max_records: int = 500, group_id: str = GROUP_ID, batch_timeout_s: float = 240.0
) -> ConsumerConfig:
    """Returns how the accounts consumer reads its topics."""
    return ConsumerConfig(
        group_id=group_id,
        batch_timeout_s=batch_timeout_s,
        topics=consumed_by("accounts"),
        dead_letter_topic=dead_letter_topic("accounts"),
        max_records=max_records,
        application_order=in_application_order,
    )


def in_application_order(events: Sequence[DecodedEvent]) -> list[DecodedEvent]:
    """Returns a batch as the handler applies it: account events, then closes by date.

    Account events before the closes of the same batch: an event that a close should count
    is then counted, rather than corrected just after it. The consumer's one-at-a-time
    fallback uses the same order.
    """
    account_events, closes = _account_events_and_closes(events)
    return account_events + closes


def _account_events_and_closes(
    events: Sequence[DecodedEvent],
) -> tuple[list[DecodedEvent], list[DecodedEvent]]:
    """Returns the account events in batch order, and the closes by business date."""
    account_events: list[DecodedEvent] = []
    closes: list[DecodedEvent] = []
    for event in events:
        is_close = event.envelope.type == cb.BUSINESS_DAY_CLOSED
        (closes if is_close else account_events).append(event)
    return account_events, sorted(closes, key=business_date_of)


def corebanking_registry() -> EventRegistry:
    """Returns the types accounts reads: core banking's contract, nothing else."""
    return EventRegistry(cb.corebanking_event_types())


def dead_letter_route(group_id: str = GROUP_ID) -> DeadLetterRoute:
    """Returns where the handler itself dead-letters (events refused long after reading)."""
    return DeadLetterRoute(dead_letter_topic("accounts"), group_id, SERVICE_VERSION)


def batch_handler(
    policies: Mapping[str, Policy], default: Policy, route: DeadLetterRoute | None = None
) -> BatchHandler:
    """Returns the handler of a fetched batch: account events first, then closes in order."""
    dead_letters = route or dead_letter_route()

    async def handle(session: AsyncSession, events: Sequence[DecodedEvent]) -> list[Rejection]:
        # The order in_application_order gives the consumer's fallback too.
        account_events, closes = _account_events_and_closes(events)
        refused = []
        if closes:
            # The close's exclusive lock first: taken after the account events' shared lock
            # and row locks, it could deadlock with a supervisor's pause waiting on a row.
            await lock_for_close(session)
        if account_events:
            refused = await apply_account_events(session, account_events, policies, dead_letters)
        for close in closes:
            await close_business_day(session, close, policies, default)
        return refused

    return handle
