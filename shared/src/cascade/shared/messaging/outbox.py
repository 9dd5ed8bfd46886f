"""Adding events to the outbox, in the caller's transaction (transactional outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.tables import key_slot

# Kafka's default message limit is 1 MiB; keep room for the record's key and headers.
MAX_EVENT_BYTES = 1_000_000


async def add_to_outbox(
    session: AsyncSession, table: Table, events: Sequence[tuple[str, Envelope]]
) -> None:
    """Adds (topic, envelope) pairs to the outbox; they publish only if the caller commits."""
    if not events:
        return
    payloads = [envelope.to_bytes() for _, envelope in events]
    for payload in payloads:
        if len(payload) > MAX_EVENT_BYTES:
            # Refused here, loudly, rather than failing at the broker after the commit.
            raise ValueError(f"an event of {len(payload)} bytes exceeds {MAX_EVENT_BYTES}")
    await session.execute(
        _insert(table.name),
        {
            "ids": [envelope.id for _, envelope in events],
            "types": [envelope.type for _, envelope in events],
            "topics": [topic for topic, _ in events],
            "keys": [envelope.subject for _, envelope in events],
            "slots": [key_slot(envelope.subject) for _, envelope in events],
            "payloads": payloads,
        },
    )


@cache
def _insert(table_name: str) -> TextClause:
    # One statement with one array per column, however many events: the cheapest way to
    # write a batch through asyncpg. Built once per table, not per business transaction.
    return text(
        f"INSERT INTO {table_name} "  # noqa: S608 - our own table name
        "(event_id, event_type, topic, message_key, key_slot, payload) "
        "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
        "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:slots AS smallint[]), "
        "CAST(:payloads AS bytea[]))"
    )
