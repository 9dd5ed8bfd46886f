"""The two paths `make bench-bus` compares: raw aiokafka (a) and the full event backbone (b)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cascade.shared.messaging.clients import make_consumer, make_producer
from cascade.shared.messaging.consumer import ConsumerConfig, EventConsumer
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.messaging.tables import key_slot
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import INBOX, OUTBOX, record_effects, step_registry
from cascade.shared.testing.kafka import create_topics, unique_name

PARTITIONS = 6
OPS_PER_TRANSACTION = 100


def freeze_inputs() -> None:
    """Keeps the garbage collector from rescanning the events built before the clock starts.

    They are this harness's input, not the bus's heap: a full collection would walk every
    one of them, several times per run, in both (a) and (b).
    """
    gc.collect()
    gc.freeze()


class RawPath:
    """(a): aiokafka producing to a topic and a group consuming it, no database."""

    def __init__(self, bootstrap: str) -> None:
        self.topic = unique_name("bench-raw")
        self.bootstrap = bootstrap
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.consumer = make_consumer(kafka, group_id=unique_name("bench"), client_id="bench-raw")
        self.producer = make_producer(kafka, client_id="bench-raw")

    async def start(self) -> None:
        await create_topics(self.bootstrap, [self.topic], partitions=PARTITIONS)
        self.consumer.subscribe([self.topic])
        await self.consumer.start()
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()
        await self.consumer.stop()

    async def run(self, steps: Sequence[Envelope]) -> None:
        """Produces `steps` and returns once the group has consumed every one."""
        consumed = asyncio.create_task(self._drain(len(steps)))
        # Serialised here, as (b)'s outbox serialises them: both start from envelopes.
        deliveries = [await self.producer.send(self.topic, e.to_bytes(), key=e.key) for e in steps]
        await asyncio.gather(*deliveries)
        await consumed

    async def _drain(self, events: int) -> None:
        seen = 0
        while seen < events:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(records) for records in batches.values())
            await self.consumer.commit()


class Pipeline:
    """(b): outbox → relay → consumer → inbox + effect, all in this process.

    Paused (relay and consumer stopped) while (a) runs: idle, its relay would still poll
    the outbox every 10 ms, on the cores (a) is measured on.
    """

    def __init__(self, url: str, bootstrap: str, writers: int) -> None:
        # A connection per writer, one for the consumer and two for the relay (its own
        # session, which holds its slot locks, and its housekeeping).
        self.engine = create_async_engine(url, pool_size=writers + 3)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.topic, self.group = unique_name("bench-pipeline"), unique_name("bench")
        self.writers = writers
        self.applied = 0  # events whose effects are committed
        self._wanted = 0
        self._all_applied = asyncio.Event()
        self.latencies_ms: list[float] = []
        self.measuring_latency = False  # the throughput rounds do not pay for latency figures
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await create_topics(self.kafka.bootstrap_servers, [self.topic], partitions=PARTITIONS)

    async def resume(self) -> None:
        """Starts a relay and a consumer (the same group, so it goes on from its offsets)."""
        self._stop = asyncio.Event()
        relay = OutboxRelay(
            self.engine,
            OUTBOX,
            lambda: make_producer(self.kafka, client_id="bench-relay"),
            metrics=BusMetrics(),
            settings=RelaySettings(batch_size=2000, idle_poll_s=0.01),
        )
        consumer = EventConsumer(
            ConsumerConfig(self.group, (self.topic,), unique_name("bench-dlq"), max_records=2000),
            consumer_factory=lambda: make_consumer(self.kafka, group_id=self.group, client_id="b"),
            producer_factory=lambda: make_producer(self.kafka, client_id="bench-dlq"),
            sessions=self.sessions,
            inbox_table=INBOX,
            registry=step_registry(),
            handler=self._handle,
            metrics=BusMetrics(),
        )
        self._tasks = [
            asyncio.create_task(relay.run(self._stop)),
            asyncio.create_task(consumer.run(self._stop)),
        ]

    async def pause(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def dispose(self) -> None:
        await self.pause()
        await self.engine.dispose()

    async def run(self, steps: Sequence[Envelope]) -> None:
        """Writes `steps` and returns once every one's effects are committed."""
        wanted = self.applied + len(steps)
        await self.write(steps)
        await self.wait_applied(wanted)

    async def write(self, steps: Sequence[Envelope]) -> None:
        """Business operations from concurrent writers, one writer per key: each
        transaction adds a batch of events to the outbox."""
        shares: list[list[Envelope]] = [[] for _ in range(self.writers)]
        for step in steps:
            shares[key_slot(step.subject) % self.writers].append(step)
        await asyncio.gather(*(self._write(share) for share in shares))

    async def _write(self, steps: Sequence[Envelope]) -> None:
        for first in range(0, len(steps), OPS_PER_TRANSACTION):
            async with self.sessions() as session, session.begin():
                chunk = steps[first : first + OPS_PER_TRANSACTION]
                await add_to_outbox(session, OUTBOX, [(self.topic, e) for e in chunk])

    async def wait_applied(self, count: int, deadline_s: float = 600) -> None:
        self._wanted = count
        self._all_applied.clear()
        if self.applied >= count:
            return
        try:
            await asyncio.wait_for(self._all_applied.wait(), deadline_s)
        except TimeoutError:
            raise TimeoutError(f"only {self.applied} of {count} events applied") from None

    async def _handle(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        await record_effects(session, events, "bench")

        def committed(_: object) -> None:  # counted once the effects are durable
            if self.measuring_latency:
                now = datetime.now(UTC)
                self.latencies_ms += [(now - e.envelope.time).total_seconds() * 1e3 for e in events]
            self.applied += len(events)
            if self.applied >= self._wanted:
                self._all_applied.set()

        event.listen(session.sync_session, "after_commit", committed, once=True)
