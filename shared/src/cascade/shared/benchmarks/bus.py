"""`make bench-bus`: the event backbone against raw Kafka, side by side in one run.

(a) raw aiokafka: produce N events and consume them in a group, no database;
(b) the full path: outbox insert, relay, consumer, inbox plus a one-row effect per event.
Both on a fresh Apache Kafka broker and PostgreSQL started here, on topics with the same
partitions, acks=all and the idempotent producer. Then (b) at a fixed offered load for
end-to-end latency. The last line printed is one JSON object.

Both paths start from the same events (envelopes built before the clock starts), serialize
them and are warmed up first. Each round times (a), (b), (a) back to back, and the ratio is
the median of the rounds' (b) over the mean of its two (a): this machine's speed drifts by
a third and more within minutes, and timing all of (a) before all of (b) measured that
drift as much as the bus.
(b)'s business operations come from several concurrent writers, as requests do in a
service: one writer alone measures its own commit round trips, not the bus. Each key has
one writer, so per-key order is as in a service that serialises one account's operations.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

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
        # Serialised here, as (b)'s outbox serialises them: both start from the same events.
        deliveries = [await self.producer.send(self.topic, e.to_bytes(), key=e.key) for e in steps]
        await asyncio.gather(*deliveries)
        await consumed

    async def _drain(self, events: int) -> None:
        seen = 0
        while seen < events:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(records) for records in batches.values())
            await self.consumer.commit()


def _freeze_inputs() -> None:
    """Keeps the garbage collector from rescanning the events built before the clock starts.

    They are this harness's input, not the bus's heap: a full collection would walk every
    one of them, several times per run, in both (a) and (b).
    """
    gc.collect()
    gc.freeze()


class Pipeline:
    """(b): outbox → relay → consumer → inbox + effect, all in this process."""

    def __init__(self, url: str, bootstrap: str, writers: int) -> None:
        # A connection per writer, one for the consumer and two for the relay (its own
        # session, which holds its slot locks, and its housekeeping).
        self.engine = create_async_engine(url, pool_size=writers + 3)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.kafka = KafkaSettings(bootstrap_servers=bootstrap)
        self.topic = unique_name("bench-pipeline")
        self.writers = writers
        self.applied = 0
        self._wanted = 0
        self._all_applied = asyncio.Event()
        self.latencies_ms: list[float] = []
        self.measuring_latency = False  # the throughput rounds do not pay for latency figures
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def handle(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        await record_effects(session, events, "bench")
        if self.measuring_latency:
            now = datetime.now(UTC)
            self.latencies_ms += [(now - e.envelope.time).total_seconds() * 1000 for e in events]
        self.applied += len(events)
        if self.applied >= self._wanted:
            self._all_applied.set()

    async def start(self) -> None:
        await create_topics(self.kafka.bootstrap_servers, [self.topic], partitions=PARTITIONS)
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
            ConsumerConfig(group, (self.topic,), unique_name("bench-dlq"), max_records=2000),
            consumer_factory=lambda: make_consumer(self.kafka, group_id=group, client_id="b"),
            producer_factory=lambda: make_producer(self.kafka, client_id="bench-dlq"),
            sessions=self.sessions,
            inbox_table=INBOX,
            registry=step_registry(),
            handler=self.handle,
            metrics=metrics,
        )
        self._tasks = [
            asyncio.create_task(relay.run(self._stop)),
            asyncio.create_task(consumer.run(self._stop)),
        ]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.engine.dispose()

    async def run(self, steps: Sequence[Envelope]) -> None:
        """Writes `steps` and returns once every one has been applied by the consumer."""
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


@dataclass
class Rounds:
    """Events/s of every (a) and (b) run, and each round's (b)/(a)."""

    raws: list[float] = field(default_factory=list)
    pipelines: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


async def paired_rounds(raw: RawPath, pipeline: Pipeline, work: Workload) -> Rounds:
    """Times each round as (a) (b) (a), back to back.

    A round's ratio is (b) over the mean of the (a) just before and just after it, so that
    a drift of the machine's speed during the round cancels out instead of landing on
    whichever path ran at the slower moment.
    """
    rounds = Rounds()
    first = work.warmup

    async def timed(run: Callable[[list[Envelope]], Awaitable[None]]) -> float:
        nonlocal first
        steps = make_steps(work.events, 1000, start=first)
        first += work.events
        _freeze_inputs()
        started = time.perf_counter()
        await run(steps)
        return work.events / (time.perf_counter() - started)

    for index in range(work.rounds):
        before = await timed(raw.run)
        middle = await timed(pipeline.run)
        after = await timed(raw.run)
        rounds.raws += [before, after]
        rounds.pipelines.append(middle)
        rounds.ratios.append(middle / statistics.mean((before, after)))
        print(
            f"    round {index + 1}: (a) {before:,.0f}  (b) {middle:,.0f}  (a) {after:,.0f}"
            f" events/s  (b)/(a) {rounds.ratios[-1]:.3f}"
        )
    return rounds


async def latency_figures(pipeline: Pipeline, rate: int, start: int) -> tuple[float, float]:
    """Returns p50 and p99 end-to-end milliseconds of (b) at `rate` events/s offered."""
    pipeline.measuring_latency = True
    done = pipeline.applied
    offered = await _offer(pipeline, rate, seconds=10, start=start)
    await pipeline.wait_applied(done + offered)
    latencies = sorted(pipeline.latencies_ms)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


async def _offer(pipeline: Pipeline, rate: int, seconds: int, start: int) -> int:
    """Offers `rate` events/s in 10 slices a second, each its own transaction."""
    per_slice, sent = max(rate // 10, 1), 0
    next_slice = time.monotonic()
    while sent < rate * seconds:
        await pipeline.write(make_steps(per_slice, 1000, start=start + sent))
        sent += per_slice
        next_slice += 0.1
        await asyncio.sleep(max(next_slice - time.monotonic(), 0))  # pacing the offered load
    return sent


async def measure(bootstrap: str, server_url: str, work: Workload) -> None:
    """Runs (a) and (b) in alternating rounds and prints the figures, the last line as JSON."""
    await create_database(server_url, "bench")
    url = database_url(server_url, "bench")
    await create_bus_schema(url)
    raw, pipeline = RawPath(bootstrap), Pipeline(url, bootstrap, work.writers)
    await raw.start()
    await pipeline.start()
    try:
        # Warm-up: connections, the groups joined, the broker's code paths compiled.
        await raw.run(make_steps(work.warmup, 1000))
        await pipeline.run(make_steps(work.warmup, 1000))
        print(
            f"{work.rounds} rounds of {work.events} events, {PARTITIONS} partitions; "
            f"(b) from {work.writers} writers"
        )
        rounds = await paired_rounds(raw, pipeline, work)
        p50, p99 = await latency_figures(
            pipeline, work.rate, start=work.warmup + 3 * work.rounds * work.events
        )
    finally:
        await pipeline.stop()
        await raw.stop()
    ratio = statistics.median(rounds.ratios)
    raw_median, pipeline_median = (
        statistics.median(rounds.raws),
        statistics.median(rounds.pipelines),
    )
    print(f"(a) raw aiokafka: {raw_median:,.0f} events/s (median)")
    print(
        f"(b) outbox -> relay -> consumer -> inbox + effect: "
        f"{pipeline_median:,.0f} events/s (median)"
    )
    print(f"    ratio (b)/(a) = {ratio:.3f}, the median of the rounds' ratios (target >= 0.40)")
    print(
        f"    end-to-end latency at {work.rate} events/s offered: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    result = {
        "raw_events_per_s": round(raw_median),
        "pipeline_events_per_s": round(pipeline_median),
        "ratio": round(ratio, 3),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
    }
    print(json.dumps(result))


def main() -> None:
    """Starts a fresh broker and database, measures, and stops them."""
    work = Workload.from_environment()
    tune_garbage_collector()  # as a service process runs, for both paths
    with fresh_infrastructure("cascade-bench-") as (_, broker, postgres):
        asyncio.run(measure(broker.bootstrap_servers, postgres.url(), work))


if __name__ == "__main__":
    main()
