"""Events a handler refuses on business rules: they go to the dead-letter topic, not the inbox.

A handler returns these instead of raising, so the rest of its batch still commits. The
consumer removes their inbox rows in the same transaction (a replay must apply them) and
dead-letters them after the commit, before the offsets move.
"""

from __future__ import annotations

from dataclasses import dataclass

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
