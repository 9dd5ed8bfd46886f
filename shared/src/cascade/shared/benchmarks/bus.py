"""`make bench-bus`: the event backbone against raw Kafka, side by side in one run.

(a) raw aiokafka: produce N events and consume them in a group, no database;
(b) the full path: outbox insert, relay, consumer, inbox plus a one-row effect per event.
Both on a fresh Apache Kafka broker and PostgreSQL started here, on topics with the same
partitions, acks=all and the idempotent producer. Then (b) at a fixed offered load for
end-to-end latency. The last line printed is one JSON object.

Both paths start from the same events (envelopes built before the clock starts), serialize
them and are warmed up first; each is timed over several rounds and its median reported,
because a single round on two shared cores varies by a third. (b)'s business operations
come from several concurrent writers, as requests do in a service: one writer alone
measures its own commit round trips, not the bus. Each key has one writer, so per-key
order is as in a service that serialises one account's operations.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cascade.shared.benchmarks.infra import fresh_infrastructure
from cascade.shared.db import create_database, database_url
from cascade.shared.gc_tuning import tune_garbage_collector
from cascade.shared.messaging.clients import make_consumer, make_producer
from cascade.shared.messaging.consumer import ConsumerConfig, EventConsumer
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.messaging.tables import key_slot
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


@dataclass(frozen=True)
class Workload:
    events: int = 40_000
    warmup: int = 5_000
    rounds: int = 5
    writers: int = 8
    rate: int = 1_000  # events/s offered for the latency figures

    @classmethod
    def from_environment(cls) -> Workload:
        """Reads BENCH_EVENTS, BENCH_WARMUP, BENCH_ROUNDS, BENCH_WRITERS and BENCH_RATE."""
        names = {f"BENCH_{field.name.upper()}": field.name for field in fields(cls)}
        return cls(
            **{name: int(os.environ[var]) for var, name in names.items() if var in os.environ}
        )


async def raw_throughputs(bootstrap: str, work: Workload) -> list[float]:
    """Returns events/s of aiokafka producing and a group consuming, no database, per round."""
    topic = unique_name("bench-raw")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    consumer = make_consumer(kafka, group_id=unique_name("bench"), client_id="bench-raw")
    consumer.subscribe([topic])
    await consumer.start()
    producer = make_producer(kafka, client_id="bench-raw")
    await producer.start()
    try:
        # Warm-up, as (b) has: the group joined, the broker's code paths compiled.
        await _produce_and_drain(producer, consumer, topic, make_steps(work.warmup, 1000))
        figures = []
        for first in _round_starts(work):
            steps = make_steps(work.events, 1000, start=first)
            _freeze_inputs()
            started = time.perf_counter()
            await _produce_and_drain(producer, consumer, topic, steps)
            figures.append(work.events / (time.perf_counter() - started))
        return figures
    finally:
        await producer.stop()
        await consumer.stop()


def _round_starts(work: Workload) -> range:
    return range(work.warmup, work.warmup + work.rounds * work.events, work.events)


async def _produce_and_drain(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    topic: str,
    steps: Sequence[Envelope],
) -> None:
    consumed = asyncio.create_task(_drain(consumer, len(steps)))
    # Serialised here, as (b)'s outbox serialises them: both start from the same events.
    deliveries = [await producer.send(topic, e.to_bytes(), key=e.key) for e in steps]
    await asyncio.gather(*deliveries)
    await consumed


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

    def __init__(self, url: str, bootstrap: str, writers: int) -> None:
        # A connection per writer, one for the consumer and two for the relay (its own
        # session, which holds its slot locks, and its housekeeping).
        self.engine = create_async_engine(url, pool_size=writers + 3)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.writers = writers
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
        """Business operations from concurrent writers, one writer per key: each
        transaction adds a batch of events to the outbox."""
        shares: list[list[Envelope]] = [[] for _ in range(self.writers)]
        for step in steps:
            shares[key_slot(step.subject) % self.writers].append(step)
        await asyncio.gather(*(self._write(topic, share) for share in shares))

    async def _write(self, topic: str, steps: Sequence[Envelope]) -> None:
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


async def pipeline_figures(url: str, bootstrap: str, work: Workload) -> dict[str, Any]:
    """Returns (b)'s throughput per round and its latency at `work.rate` events/s offered."""
    topic = unique_name("bench-pipeline")
    await create_topics(bootstrap, [topic], partitions=PARTITIONS)
    pipeline = Pipeline(url, bootstrap, work.writers)
    tasks = await pipeline.start(topic)
    try:
        # Warm-up, as (a) has: connections, the group joined, the broker's code compiled.
        await pipeline.write(topic, make_steps(work.warmup, 1000))
        await pipeline.wait_applied(work.warmup)
        throughputs = []
        for first in _round_starts(work):
            steps = make_steps(work.events, 1000, start=first)
            _freeze_inputs()
            started = time.perf_counter()
            await pipeline.write(topic, steps)
            await pipeline.wait_applied(first + work.events)
            throughputs.append(work.events / (time.perf_counter() - started))
        pipeline.measuring_latency = True
        done = pipeline.applied
        offered = await _offer(pipeline, topic, work.rate, seconds=10, start=done)
        await pipeline.wait_applied(done + offered)
        latencies = sorted(pipeline.latencies_ms)
        return {
            "throughputs": throughputs,
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


async def measure(bootstrap: str, server_url: str, work: Workload) -> None:
    """Runs (a) then (b) and prints the figures, the last line as JSON."""
    await create_database(server_url, "bench")
    url = database_url(server_url, "bench")
    await create_bus_schema(url)
    raws = await raw_throughputs(bootstrap, work)
    raw = statistics.median(raws)
    print(
        f"(a) raw aiokafka, {work.events} events, {PARTITIONS} partitions: {raw:,.0f} events/s"
        f"  (median of {_listed(raws)})"
    )
    figures = await pipeline_figures(url, bootstrap, work)
    pipeline = statistics.median(figures["throughputs"])
    print(
        f"(b) outbox -> relay -> consumer -> inbox + effect, {work.writers} writers: "
        f"{pipeline:,.0f} events/s  (median of {_listed(figures['throughputs'])})"
    )
    print(f"    ratio (b)/(a) = {pipeline / raw:.2f}  (target >= 0.40)")
    print(
        f"    end-to-end latency at {work.rate} events/s offered: "
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


def _listed(figures: Sequence[float]) -> str:
    return ", ".join(f"{figure:,.0f}" for figure in figures)


def main() -> None:
    """Starts a fresh broker and database, measures, and stops them."""
    work = Workload.from_environment()
    tune_garbage_collector()  # as a service process runs, for both paths
    with fresh_infrastructure("cascade-bench-") as (_, broker, postgres):
        asyncio.run(measure(broker.bootstrap_servers, postgres.url(), work))


if __name__ == "__main__":
    main()
