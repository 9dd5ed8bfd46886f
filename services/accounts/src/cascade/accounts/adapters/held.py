"""Events for an account core banking has not opened yet: kept, and handed back at opening.

The contract says such events must not be lost; checks that need the account (its
currency) run when it opens. The original bytes and the record's position are kept, so
an event refused then is dead-lettered with its true provenance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.contracts import default_registry
from cascade.shared.messaging.envelope import decode
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry
from cascade.shared.messaging.rejections import Origin, Rejection


@dataclass(frozen=True)
class Incoming:
    """A decoded event, and where it was read if it was held from an earlier batch."""

    event: DecodedEvent
    held: Rejection | None = None  # a template carrying the held event's origin and bytes


@cache
def _registry() -> EventRegistry:
    return default_registry()


def origin_of(event: DecodedEvent) -> tuple[Origin, bytes]:
    """Returns where the event's record was read, and its bytes."""
    record = event.record
    if record is None:  # built in a test, not read from Kafka
        return Origin("", -1, -1, 0), event.envelope.to_bytes()
    return Origin(record.topic, record.partition, record.offset, record.timestamp), record.value


async def hold(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    """Keeps events until their account opens (a redelivered one is kept once)."""
    if not events:
        return
    origins = [origin_of(event) for event in events]
    await session.execute(
        text(
            "INSERT INTO held_event (event_id, account_id, event_type, envelope, origin_topic, "
            "origin_partition, origin_offset, origin_timestamp) SELECT * FROM unnest("
            "CAST(:ids AS text[]), CAST(:accounts AS text[]), CAST(:types AS text[]), "
            "CAST(:values AS bytea[]), CAST(:topics AS text[]), CAST(:partitions AS int[]), "
            "CAST(:offsets AS bigint[]), CAST(:timestamps AS bigint[])) ON CONFLICT DO NOTHING"
        ),
        {
            "ids": [e.envelope.id for e in events],
            "accounts": [e.envelope.subject for e in events],
            "types": [e.envelope.type for e in events],
            "values": [value for _, value in origins],
            "topics": [origin.topic for origin, _ in origins],
            "partitions": [origin.partition for origin, _ in origins],
            "offsets": [origin.offset for origin, _ in origins],
            "timestamps": [origin.timestamp for origin, _ in origins],
        },
    )


async def take_held(session: AsyncSession, account_ids: Sequence[str]) -> dict[str, list[Incoming]]:
    """Removes and returns the events held for `account_ids`, by account."""
    if not account_ids:
        return {}
    rows = await session.execute(
        text(
            "DELETE FROM held_event WHERE account_id = ANY(:ids) RETURNING account_id, "
            "envelope, origin_topic, origin_partition, origin_offset, origin_timestamp"
        ),
        {"ids": list(account_ids)},
    )
    held: dict[str, list[Incoming]] = defaultdict(list)
    for row in rows:
        value = bytes(row.envelope)
        event = _registry().validate(decode(value))  # it validated when it was held
        origin = Origin(
            row.origin_topic, row.origin_partition, row.origin_offset, row.origin_timestamp
        )
        held[row.account_id].append(Incoming(event, Rejection(event, "", "", origin, value)))
    return dict(held)


async def held_backlog(session: AsyncSession) -> tuple[int, float]:
    """Returns how many events are held and the age in seconds of the oldest (0 if none)."""
    row = (
        await session.execute(
            text(
                "SELECT count(*) AS held, "
                "COALESCE(EXTRACT(EPOCH FROM now() - min(held_at)), 0) AS oldest_s "
                "FROM held_event"
            )
        )
    ).one()
    return int(row.held), float(row.oldest_s)
