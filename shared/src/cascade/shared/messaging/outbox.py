"""Adding events to the outbox, in the caller's transaction (transactional outbox)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.tables import key_slot


async def add_to_outbox(
    session: AsyncSession, table: Table, events: Sequence[tuple[str, Envelope]]
) -> None:
    """Adds (topic, envelope) pairs to the outbox; they publish only if the caller commits."""
    if not events:
        return
    rows = [
        {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "topic": topic,
            "message_key": envelope.subject,
            "key_slot": key_slot(envelope.subject),
            "payload": envelope.to_bytes(),
        }
        for topic, envelope in events
    ]
    await session.execute(insert(table), rows)
