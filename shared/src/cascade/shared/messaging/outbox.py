"""Adding events to the outbox, in the caller's transaction (transactional outbox)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.messaging.dead_letters import DeadLetter, dead_letter_headers
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.event_ids import new_event_id
from cascade.shared.messaging.tables import key_slot

# Kafka's default message limit is 1 MiB; keep room for the record's key and headers.
MAX_EVENT_BYTES = 1_000_000


async def add_to_outbox(
    session: AsyncSession, table: Table, events: Sequence[tuple[str, Envelope]]
) -> None:
    """Adds (topic, envelope) pairs to the outbox; they publish only if the caller commits."""
    if not events:
        return
    ids, types, topics, keys, slots, payloads = [], [], [], [], [], []
    for topic, envelope in events:  # one pass: this runs for every event the platform emits
        payload = envelope.to_bytes()
        if len(payload) > MAX_EVENT_BYTES:
            # Refused here, loudly, rather than failing at the broker after the commit.
            raise ValueError(f"an event of {len(payload)} bytes exceeds {MAX_EVENT_BYTES}")
        ids.append(envelope.id)
        types.append(envelope.type)
        topics.append(topic)
        keys.append(envelope.subject)
        slots.append(key_slot(envelope.subject))
        payloads.append(payload)
    # On the session's connection, in its transaction: a text statement needs nothing of
    # the ORM session, whose execute path costs more than the statement's own encoding.
    connection = await session.connection()
    await connection.execute(
        _insert(table.name),
        {
            "ids": ids,
            "types": types,
            "topics": topics,
            "keys": keys,
            "slots": slots,
            "payloads": payloads,
        },
    )


@cache
def _insert(table_name: str, *, with_headers: bool = False) -> TextClause:
    # One statement with one array per column, however many events: the cheapest way to
    # write a batch through asyncpg. Built once per table, not per business transaction.
    # Events carry no headers, so their statement leaves that array out; dead letters do.
    # The outbox's trigger lists the rows as pending for the relay (tables.LIST_PENDING_DDL).
    headers = (", headers", ", CAST(:headers AS bytea[])") if with_headers else ("", "")
    return text(
        f"INSERT INTO {table_name} "  # noqa: S608 - our own table name
        f"(event_id, event_type, topic, message_key, key_slot, payload{headers[0]}) "
        "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
        "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:slots AS smallint[]), "
        f"CAST(:payloads AS bytea[]){headers[1]})"
    )


@dataclass(frozen=True)
class DeadLetterRoute:
    """Where a service's dead letters go, and the provenance it stamps on them."""

    topic: str
    consumer_group: str
    service_version: str


async def add_dead_letters_to_outbox(
    session: AsyncSession, table: Table, route: DeadLetterRoute, letters: Sequence[DeadLetter]
) -> None:
    """Adds dead letters (original key, value and provenance headers) in the caller's
    transaction: a refusal and its dead letter then commit together or not at all."""
    if not letters:
        return
    keys = [(letter.record.key or b"").decode("utf-8", "replace") for letter in letters]
    headers = [
        json.dumps(
            {
                k: v.decode()
                for k, v in dead_letter_headers(letter, route.consumer_group, route.service_version)
            }
        )
        for letter in letters
    ]
    await session.execute(
        _insert(table.name, with_headers=True),
        {
            # Not the event's id: that one may be dead-lettered again after a replay.
            "ids": [f"dead-letter:{new_event_id()}" for _ in letters],
            "types": [letter.event_type or "unknown" for letter in letters],
            "topics": [route.topic] * len(letters),
            "keys": keys,
            "slots": [key_slot(key) for key in keys],
            "payloads": [letter.record.value or b"" for letter in letters],
            "headers": [h.encode() for h in headers],
        },
    )
