"""`make bench-bus`: the event backbone against raw Kafka, side by side in one run.

(a) raw aiokafka: produce N events and consume them in a group, no database;
(b) the full path: outbox insert, relay, consumer, inbox plus a one-row effect per event.
Both on a fresh Apache Kafka broker and PostgreSQL started here, on topics with the same
partitions, acks=all and the idempotent producer. Then (b) at a fixed offered load for
end-to-end latency. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cascade.shared.benchmarks.infra import fresh_infrastructure
from cascade.shared.db import create_database, database_url
from cascade.shared.messaging.clients import make_consumer, make_producer
from cascade.shared.messaging.consumer import ConsumerConfig, EventConsumer
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import (
    INBOX,
    OUTBOX,
    create_bus_schema,
    make_steps,
    record_effects,
    step_registry,
)
from cascade.shared.testing.kafka import create_topics, unique_name

PARTITIONS = 6
OPS_PER_TRANSACTION = 100


async def raw_throughput(bootstrap: str, events: int) -> float:
    """Returns events/s of aiokafka producing and a group consuming, no database."""
    topic = unique_name("bench-raw")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    payloads = [(e.key, e.to_bytes()) for e in make_steps(events, 1000)]
    _freeze_inputs()
    consumer = make_consumer(kafka, group_id=unique_name("bench"), client_id="bench-raw")
    consumer.subscribe([topic])
    await consumer.start()
    producer = make_producer(kafka, client_id="bench-raw")
    await producer.start()
    try:
        started = time.perf_counter()
        consumed = asyncio.create_task(_drain(consumer, events))
        deliveries = [await producer.send(topic, value, key=key) for key, value in payloads]
        await asyncio.gather(*deliveries)
        await consumed
        return events / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def _freeze_inputs() -> None:
    """Keeps the garbage collector from rescanning the events built before the clock starts.

    They are this harness's input, not the bus's heap: a full collection would walk every
    one of them, several times per run, in both (a) and (b).
    """
    gc.collect()
    gc.freeze()


async def _drain(consumer: AIOKafkaConsumer, events: int) -> None:
    seen = 0
    while seen < events:
        batches = await consumer.getmany(timeout_ms=200, max_records=5000)
        seen += sum(len(records) for records in batches.values())
        await consumer.commit()


class Pipeline:
    """Outbox → relay → consumer → inbox + effect, all in this process."""

    def __init__(self, url: str, bootstrap: str) -> None:
        self.engine = create_async_engine(url, pool_size=4)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.applied = 0
        self.latencies_ms: list[float] = []
        self.measuring_latency = False  # the throughput run does not pay for latency figures
        self.stop = asyncio.Event()

    async def handle(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        await record_effects(session, events, "bench")
        if self.measuring_latency:
            now = datetime.now(UTC)
            self.latencies_ms += [(now - e.envelope.time).total_seconds() * 1000 for e in events]
        self.applied += len(events)

    async def start(self, topic: str) -> list[asyncio.Task[None]]:
        metrics = BusMetrics()
        relay = OutboxRelay(
            self.engine,
            OUTBOX,
            lambda: make_producer(self.kafka, client_id="bench-relay"),
            metrics=metrics,
            settings=RelaySettings(batch_size=2000, idle_poll_s=0.01),
        )
        group = unique_name("bench")
        consumer = EventConsumer(
            ConsumerConfig(group, (topic,), unique_name("bench-dlq"), max_records=2000),
            consumer_factory=lambda: make_consumer(self.kafka, group_id=group, client_id="b"),
            producer_factory=lambda: make_producer(self.kafka, client_id="bench-dlq"),
            sessions=self.sessions,
            inbox_table=INBOX,
            registry=step_registry(),
            handler=self.handle,
            metrics=metrics,
        )
        return [
            asyncio.create_task(relay.run(self.stop)),
            asyncio.create_task(consumer.run(self.stop)),
        ]

    async def write(self, topic: str, steps: Sequence[Envelope]) -> None:
        """Business operations: each transaction adds a batch of events to the outbox."""
        for first in range(0, len(steps), OPS_PER_TRANSACTION):
            async with self.sessions() as session, session.begin():
                chunk = steps[first : first + OPS_PER_TRANSACTION]
                await add_to_outbox(session, OUTBOX, [(topic, e) for e in chunk])

    async def wait_applied(self, count: int, deadline_s: float = 600) -> None:
        deadline = time.monotonic() + deadline_s
        while self.applied < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.applied} of {count} events applied")
            await asyncio.sleep(0.01)


async def pipeline_figures(url: str, bootstrap: str, events: int, rate: int) -> dict[str, float]:
    """Returns (b)'s throughput and its latency at `rate` events/s offered."""
    topic = unique_name("bench-pipeline")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    pipeline = Pipeline(url, bootstrap)
    tasks = await pipeline.start(topic)
    try:
        await pipeline.write(topic, make_steps(100, 100))  # warm-up: connections, group join
        await pipeline.wait_applied(100)
        # The events exist before the clock starts, as in (a): only the bus is measured.
        steps = make_steps(events, 1000, start=100)
        _freeze_inputs()
        started = time.perf_counter()
        await pipeline.write(topic, steps)
        await pipeline.wait_applied(100 + events)
        throughput = events / (time.perf_counter() - started)
        pipeline.measuring_latency = True
        done = pipeline.applied
        offered = await _offer(pipeline, topic, rate, seconds=10, start=100 + events)
        await pipeline.wait_applied(done + offered)
        latencies = sorted(pipeline.latencies_ms)
        return {
            "pipeline_events_per_s": throughput,
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        }
    finally:
        pipeline.stop.set()
        await asyncio.gather(*tasks)
        await pipeline.engine.dispose()


async def _offer(pipeline: Pipeline, topic: str, rate: int, seconds: int, start: int) -> int:
    """Offers `rate` events/s in 10 slices a second, each its own transaction."""
    per_slice, sent = max(rate // 10, 1), 0
    next_slice = time.monotonic()
    while sent < rate * seconds:
        await pipeline.write(topic, make_steps(per_slice, 1000, start=start + sent))
        sent += per_slice
        next_slice += 0.1
        await asyncio.sleep(max(next_slice - time.monotonic(), 0))  # pacing the offered load
    return sent


async def measure(bootstrap: str, server_url: str, events: int, rate: int) -> None:
    """Runs (a) then (b) and prints the figures, the last line as JSON."""
    await create_database(server_url, "bench")
    url = database_url(server_url, "bench")
    await create_bus_schema(url)
    raw = await raw_throughput(bootstrap, events)
    print(f"(a) raw aiokafka, {events} events, {PARTITIONS} partitions: {raw:,.0f} events/s")
    figures = await pipeline_figures(url, bootstrap, events, rate)
    pipeline = figures["pipeline_events_per_s"]
    print(f"(b) outbox -> relay -> consumer -> inbox + effect: {pipeline:,.0f} events/s")
    print(f"    ratio (b)/(a) = {pipeline / raw:.2f}  (target >= 0.40)")
    print(
        f"    end-to-end latency at {rate} events/s offered: "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms"
    )
    result = {
        "raw_events_per_s": round(raw),
        "pipeline_events_per_s": round(pipeline),
        "ratio": round(pipeline / raw, 3),
        "p50_ms": round(figures["p50_ms"], 1),
        "p99_ms": round(figures["p99_ms"], 1),
    }
    print(json.dumps(result))


def main() -> None:
    """Starts a fresh broker and database, measures, and stops them."""
    events = int(os.environ.get("BENCH_EVENTS", "20000"))
    rate = int(os.environ.get("BENCH_RATE", "1000"))
    with fresh_infrastructure("cascade-bench-") as (_, broker, postgres):
        asyncio.run(measure(broker.bootstrap_servers, postgres.url(), events, rate))


if __name__ == "__main__":
    main()
