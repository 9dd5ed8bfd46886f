"""A test bus: the event type, tables and helpers that the backbone's fault tests share.

The effect of an event is a row in `bus_effect` carrying its `source_event_id` with NO
unique constraint, so that a duplicated effect is visible to the history checker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.db import make_metadata
from cascade.shared.messaging.envelope import Envelope, new_envelope
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry, EventType
from cascade.shared.messaging.tables import inbox_table, outbox_table

STEP_RECORDED = "cascade.test.step-recorded.v1"


class StepRecorded(BaseModel):
    """A test event: step `seq` of account `account_id` (seq rises per account)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    account_id: str
    seq: int
    note: str | None = None


def step_registry() -> EventRegistry:
    """Returns a registry that knows the test event type."""
    return EventRegistry([EventType(STEP_RECORDED, StepRecorded)])


metadata: MetaData = make_metadata()
OUTBOX = outbox_table(metadata)
INBOX = inbox_table(metadata)
EFFECT = Table(
    "bus_effect",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("source_event_id", Text, nullable=False),
    Column("message_key", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("worker", Text, nullable=False),
)


@asynccontextmanager
async def _connected(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own to a test database, closed with its engine afterwards."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def create_bus_schema(database_url: str) -> None:
    """Creates the outbox, inbox and effect tables in a test database."""
    async with _connected(database_url) as connection, connection.begin():
        await connection.run_sync(metadata.create_all)


def make_steps(count: int, accounts: int, *, start: int = 0) -> list[Envelope]:
    """Returns `count` test events spread over `accounts` keys, seq rising per key."""
    events = []
    for index in range(start, start + count):
        account = f"ACC-{index % accounts:05d}"
        events.append(
            new_envelope(
                type=STEP_RECORDED,
                source="cascade-tests",
                subject=account,
                data=StepRecorded(account_id=account, seq=index // accounts),
                time=datetime.now(UTC),
            )
        )
    return events


_INSERT_EFFECTS = text(
    "INSERT INTO bus_effect (source_event_id, message_key, seq, worker) "
    "SELECT *, CAST(:worker AS text) FROM unnest(CAST(:ids AS text[]), "
    "CAST(:keys AS text[]), CAST(:seqs AS integer[]))"
)


async def record_effects(
    session: AsyncSession, events: Sequence[DecodedEvent], worker: str
) -> None:
    """The test handler: one effect row per applied event, in one grouped statement."""
    if not events:
        return
    await session.execute(
        _INSERT_EFFECTS,
        {
            "ids": [event.envelope.id for event in events],
            "keys": [event.envelope.subject for event in events],
            "seqs": [getattr(event.payload, "seq", -1) for event in events],
            "worker": worker,
        },
    )


async def effects_without_inbox_row(database_url: str, consumer_group: str) -> int:
    """Counts effects with no inbox row of `consumer_group` for their event: effects that
    were committed apart from the consumer's transaction (matrix R2's phantoms)."""
    recorded = select(INBOX.c.event_id).where(
        INBOX.c.consumer_group == consumer_group,
        INBOX.c.event_id == EFFECT.c.source_event_id,
    )
    async with _connected(database_url) as connection:
        count = await connection.scalar(
            select(func.count()).select_from(EFFECT).where(~recorded.exists())
        )
    return int(count or 0)


async def read_effects(database_url: str) -> list[tuple[str, str, int]]:
    """Returns (source_event_id, message_key, seq) of every effect, in application order."""
    async with _connected(database_url) as connection:
        result = await connection.execute(
            select(EFFECT.c.source_event_id, EFFECT.c.message_key, EFFECT.c.seq).order_by(
                EFFECT.c.id
            )
        )
        return [(row[0], row[1], row[2]) for row in result]
