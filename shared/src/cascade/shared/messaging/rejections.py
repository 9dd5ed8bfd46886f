"""Events a handler refuses on business rules: they go to the dead-letter topic, not the inbox.

A handler returns these instead of raising, so the rest of its batch still commits. The
consumer removes their inbox rows in the same transaction (a replay must apply them) and
dead-letters them after the commit, before the offsets move.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from cascade.shared.messaging.dead_letters import DeadLetter
from cascade.shared.messaging.registry import DecodedEvent


@dataclass(frozen=True)
class Origin:
    """Where a record was read: the dead letter's provenance."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True)
class Rejection:
    """One refused event, why (a reason code) and a message naming the rule, never a value."""

    event: DecodedEvent
    reason: str
    message: str
    # Set when the event was read in an earlier batch (held, then refused); otherwise the
    # consumer finds the record in the batch it is applying.
    origin: Origin | None = None
    value: bytes | None = None


def dead_letter_of(rejection: Rejection) -> DeadLetter:
    """Returns the dead letter of a refused event, with the provenance of its record."""
    event, origin = rejection.event, rejection.origin
    record = event.record
    if origin is not None or record is None:
        origin = origin or Origin("", -1, -1, 0)
        value = rejection.value or event.envelope.to_bytes()
        record = ConsumerRecord(
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            timestamp=origin.timestamp,
            timestamp_type=0,
            key=event.envelope.key,
            value=value,
            checksum=None,
            serialized_key_size=len(event.envelope.key),
            serialized_value_size=len(value),
            headers=(),
        )
    return DeadLetter(
        record=record,
        reason=rejection.reason,
        error_class=f"{Rejection.__module__}.{Rejection.__qualname__}",
        message=rejection.message,
        attempts=1,
        event_type=event.envelope.type,
        event_id=event.envelope.id,
    )
