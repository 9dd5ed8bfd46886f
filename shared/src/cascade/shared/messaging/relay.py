"""The outbox relay: publishes committed outbox rows in order per key, marks them after ack.

Several relays may run at once. Keys hash into `KEY_SLOTS` slots and a relay publishes
only the slots it holds a PostgreSQL advisory lock on, taking a fair share of them (slots
divided by live relays), so one key is only ever published by one relay at a time. A
plain `FOR UPDATE SKIP LOCKED` claim would let two relays publish one key's rows in
parallel and out of order; it is kept only as the tests' negative control.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    BigInteger,
    SmallInteger,
    Table,
    any_,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cascade.shared.logging import get_logger
from cascade.shared.messaging.advisory import MEMBER_LOCKS, SLOT_LOCKS, try_advisory_lock
from cascade.shared.messaging.backoff import Backoff, repeat_until_stopped, wait_or_stop
from cascade.shared.messaging.batching import PartitionCache, publish_all
from cascade.shared.messaging.faults import crash_point
from cascade.shared.messaging.metrics import BusMetrics, count_by_type
from cascade.shared.messaging.outbox_upkeep import prune_and_measure, vacuum_pending
from cascade.shared.messaging.safety import UnsafeConfigError, verify_producer
from cascade.shared.messaging.tables import KEY_SLOTS, PENDING

log = get_logger(__name__)

_MAX_RELAYS = 64


@dataclass(frozen=True)
class RelaySettings:
    batch_size: int = 2000
    idle_poll_s: float = 0.05
    # How often a relay recounts the live relays and takes or gives back key slots; a
    # new relay gets its share within about this long.
    rebalance_every_s: float = 1.0
    max_backoff_s: float = 5.0
    retention: timedelta = timedelta(days=7)
    housekeeping_every_s: float = 10.0
    # outbox_pending takes an insert and a delete per event. Its dead entries are scanned
    # by every claim (which reads from the lowest id) until a vacuum removes them, and
    # autovacuum visits a database about once a minute: at 10,000 events/s an idle claim
    # grew from 0.2 to over 5 ms. So the relay vacuums it after this many published rows
    # (with key slots only: the control mode's claim runs in a transaction); None leaves it
    # to autovacuum.
    vacuum_every_rows: int | None = 20_000
    # False only in the negative-control test: a plain SKIP LOCKED claim, no key slots.
    partition_by_key: bool = True
    embedded_broker: bool = False


class OutboxRelay:
    """Publishes one service's outbox to Kafka; run several for availability."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        metrics: BusMetrics,
        settings: RelaySettings | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._producer_factory = producer_factory
        self._metrics = metrics
        self._settings = settings or RelaySettings()
        self.owned_slots: set[int] = set()
        self._pending = table.metadata.tables[PENDING]
        # Published: no longer pending. The outbox row itself is never updated (schema_v3).
        self._mark = delete(self._pending).where(
            self._pending.c.id == any_(cast(bindparam("ids"), ARRAY(BigInteger)))
        )
        self._claim = self._claim_query()  # built once: slots are a parameter
        self._partitions = PartitionCache()
        self._published_since_vacuum = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set, riding out broker and database outages."""
        housekeeping = asyncio.create_task(self._housekeeping_loop(stop))
        try:
            await self._publish_until(stop)
        finally:
            stop.set()
            await housekeeping

    async def _publish_until(self, stop: asyncio.Event) -> None:
        backoff = Backoff(max_delay_s=self._settings.max_backoff_s)
        while not stop.is_set():
            try:
                async with self._resources() as (connection, producer):
                    await self._publish_loop(connection, producer, stop, backoff)
            except UnsafeConfigError:
                raise  # a configuration bug: retrying cannot fix it
            except Exception as error:  # transient by nature here: broker or database down
                log.warning("outbox.relay_retrying", error_class=type(error).__name__)
                await backoff.wait(stop)

    @asynccontextmanager
    async def _resources(self) -> AsyncIterator[tuple[AsyncConnection, AIOKafkaProducer]]:
        producer = self._producer_factory()
        verify_producer(producer, embedded_broker=self._settings.embedded_broker)
        try:
            await producer.start()
            # A dedicated connection: its session holds this relay's advisory locks,
            # which PostgreSQL releases by itself if the relay dies.
            async with self._engine.connect() as connection:
                if self._settings.partition_by_key:
                    # Slot locks, not row locks, keep relays apart: the claim and the mark
                    # are single statements and need no BEGIN/COMMIT round trips.
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    yield connection, producer
                finally:
                    self.owned_slots.clear()
                    # Returned to a pool, the connection would keep this relay's advisory
                    # locks; invalidating it ends the session and releases them.
                    await connection.invalidate()
        finally:
            await producer.stop()

    async def _publish_loop(
        self,
        connection: AsyncConnection,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        backoff: Backoff,
    ) -> None:
        await self._join(connection)
        rebalance_at = 0.0
        while not stop.is_set():
            if self._settings.partition_by_key and time.monotonic() >= rebalance_at:
                await self._rebalance(connection)
                rebalance_at = time.monotonic() + self._settings.rebalance_every_s
            published = await self._publish_batch(connection, producer)
            backoff.reset()
            await self._vacuum_if_due(connection, published)
            if published == 0:
                await wait_or_stop(stop, self._settings.idle_poll_s)

    async def _join(self, connection: AsyncConnection) -> None:
        for member in range(_MAX_RELAYS):
            if await try_advisory_lock(connection, MEMBER_LOCKS, member):
                log.info("outbox.relay_joined", member=member)
                return
        raise RuntimeError(f"more than {_MAX_RELAYS} relays on one database")

    async def _rebalance(self, connection: AsyncConnection) -> None:
        members = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :ns AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ),
            {"ns": MEMBER_LOCKS},
        )
        fair_share = math.ceil(KEY_SLOTS / max(int(members or 1), 1))
        # Released only between batches: every row sent under a slot is marked first.
        for slot in sorted(self.owned_slots)[fair_share:]:
            await connection.execute(
                text("SELECT pg_advisory_unlock(:ns, :slot)"), {"ns": SLOT_LOCKS, "slot": slot}
            )
            self.owned_slots.discard(slot)
        for slot in range(KEY_SLOTS):
            if len(self.owned_slots) >= fair_share:
                break
            if slot in self.owned_slots:
                continue
            if await try_advisory_lock(connection, SLOT_LOCKS, slot):
                self.owned_slots.add(slot)
        await connection.commit()

    async def _publish_batch(self, connection: AsyncConnection, producer: AIOKafkaProducer) -> int:
        # One row of arrays rather than a row per event: asyncpg decodes arrays in C.
        slots = {"slots": sorted(self.owned_slots)} if self._settings.partition_by_key else {}
        ids, topics, keys, payloads, types, headers = (
            await connection.execute(self._claim, slots)
        ).one()
        if self._settings.partition_by_key or not ids:
            # Slot locks make row locks unnecessary: end the read transaction at once.
            await connection.commit()
        if not ids:
            return 0
        crash_point("relay_before_send")
        # The stored bytes are published as they are: no decoding, no re-serialising.
        records = list(zip(topics, keys, payloads, map(kafka_headers, headers), strict=True))
        await publish_all(producer, records, self._partitions)
        crash_point("relay_after_kafka_ack_before_mark_sent")
        await connection.execute(self._mark, {"ids": ids})
        await connection.commit()
        count_by_type(self._metrics.published, types)
        return len(ids)

    async def _vacuum_if_due(self, connection: AsyncConnection, published: int) -> None:
        self._published_since_vacuum += published
        every = self._settings.vacuum_every_rows
        # Only on the autocommit connection of slot locks: VACUUM cannot run in a transaction.
        if every is None or not self._settings.partition_by_key:
            return
        if self._published_since_vacuum >= every:
            self._published_since_vacuum = 0
            await vacuum_pending(connection)

    def _claim_query(self) -> Any:
        table, pending = self._table, self._pending
        listed = select(pending.c.id).order_by(pending.c.id).limit(self._settings.batch_size)
        if self._settings.partition_by_key:
            # One array parameter, so one prepared statement whatever the slots are.
            slots = cast(bindparam("slots"), ARRAY(SmallInteger))
            listed = listed.where(pending.c.key_slot == any_(slots))
        else:
            listed = listed.with_for_update(skip_locked=True)
        claimed = listed.subquery()
        rows = (
            select(
                table.c.id,
                table.c.topic,
                # The Kafka key as bytes, converted by the database rather than per row here.
                func.convert_to(table.c.message_key, "UTF8").label("key"),
                table.c.payload,
                table.c.event_type,
                table.c.headers,
            )
            .join(claimed, claimed.c.id == table.c.id)
            .subquery()
        )
        return select(*(func.array_agg(aggregate_order_by(c, rows.c.id)) for c in rows.c))

    async def _housekeeping_loop(self, stop: asyncio.Event) -> None:
        """Prunes and measures the outbox on its own connection, so that the backlog
        gauges keep moving while publishing waits on a broker that is down."""

        async def housekeep() -> None:
            async with self._engine.connect() as connection:
                await self._housekeeping(connection, stop)

        every_s = self._settings.housekeeping_every_s
        await repeat_until_stopped(stop, every_s, housekeep, "outbox.housekeeping_failed")

    async def _housekeeping(self, connection: AsyncConnection, stop: asyncio.Event) -> None:
        retention, metrics = self._settings.retention, self._metrics
        pruned = await prune_and_measure(connection, self._table, retention, metrics, stop)
        if pruned:
            log.info("outbox.pruned", rows=pruned)


def kafka_headers(stored: bytes | None) -> list[tuple[str, bytes]] | None:
    """Returns the Kafka headers of an outbox row (JSON {name: text}), or None."""
    if stored is None:
        return None
    return [(name, value.encode()) for name, value in json.loads(stored).items()]
