"""Driving the backbone's fault tests: produce, run killable workers, wait, check."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.processes import (
    spawn_detached,
    stop_process,
    wait_until,
    wait_until_async,
)
from cascade.shared.messaging.clients import make_consumer, make_producer
from cascade.shared.messaging.consumer import BatchHandler, ConsumerConfig, EventConsumer
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.runtime import run_in_background
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import INBOX, read_effects, step_registry
from cascade.shared.testing.history import HistoryReport, Produced, check_history
from cascade.shared.testing.kafka import group_lag


async def produce_envelopes(
    bootstrap: str, topic: str, envelopes: Sequence[Envelope], *, copies: int = 1
) -> list[Produced]:
    """Sends each envelope `copies` times (same id), keyed by subject; returns the acked ones."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        deliveries = []
        for _ in range(copies):
            for envelope in envelopes:
                deliveries.append(
                    (envelope, await producer.send(topic, envelope.to_bytes(), key=envelope.key))
                )
        acked: dict[str, Produced] = {}
        for envelope, delivery in deliveries:
            await delivery  # raises if not acknowledged: the test then fails loudly
            acked[envelope.id] = Produced(envelope.id, envelope.subject, int(envelope.data["seq"]))
        return list(acked.values())
    finally:
        await producer.stop()


class Worker:
    """A bus_worker process (consumer or relay) that a test can crash and restart."""

    def __init__(self, log_dir: Path, role: str, args: Sequence[str]) -> None:
        self._log_dir = log_dir
        self._role = role
        self._args = list(args)
        self.runs = 0
        self.pids: list[int] = []  # of every run, in order
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, crash_at: str | None = None, crash_after: int = 1) -> Worker:
        """Starts the worker, armed to SIGKILL itself at `crash_at` if given."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_CRASH")}
        if crash_at is not None:
            env |= {"CASCADE_CRASH_AT": crash_at, "CASCADE_CRASH_AFTER": str(crash_after)}
        self.runs += 1
        argv = [sys.executable, "-m", "cascade.shared.testing.bus_worker", self._role, *self._args]
        self.process = spawn_detached(argv, self.log_file, env=env)
        self.pids.append(self.process.pid)
        return self

    @property
    def log_file(self) -> Path:
        return self._log_dir / f"{self._role}-{id(self)}.log"

    def running(self) -> bool:
        """Whether the worker's process is started and has not ended."""
        return self.process is not None and self.process.poll() is None

    def wait_crashed(self, timeout: float = 120.0) -> int:
        """Waits until the worker's process has ended; returns its exit code."""
        process = self.process
        assert process is not None
        wait_until(
            lambda: process.poll() is not None,
            timeout,
            "the worker to crash",
            log_file=self.log_file,
        )
        return int(process.returncode)

    def stop(self) -> None:
        """Stops the worker cleanly (SIGTERM), SIGKILL after a grace period."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process.pid, timeout=30)

    def duplicates_skipped(self) -> int:
        """Returns the inbox dedup counter summed over every run of this worker."""
        return sum(self.duplicates_by_run())

    def duplicates_by_run(self) -> list[int]:
        """Returns the inbox dedup counter of each run, in the order they started (a run
        that applied no batch counts 0)."""
        last_by_pid: dict[int, float] = {}
        for line in self.log_file.read_text(errors="replace").splitlines():
            if line.startswith('{"pid"'):
                report = json.loads(line)
                last_by_pid[report["pid"]] = report["duplicates"]
        return [int(last_by_pid.get(pid, 0)) for pid in self.pids]


async def wait_all_applied(
    database_url: str, produced: Sequence[Produced], deadline_s: float = 120.0
) -> None:
    """Waits until every produced event has at least one effect."""
    expected = {event.event_id for event in produced}

    async def done() -> bool:
        applied = {event_id for event_id, _, _ in await read_effects(database_url)}
        return expected <= applied

    await wait_until_async(done, deadline_s, f"{len(expected)} events to be applied")


async def applied_within(
    database_url: str, produced: Sequence[Produced], deadline_s: float
) -> float | None:
    """Waits until every produced event is applied; returns how many seconds that took, or
    None when not all were within `deadline_s` (a negative control's outcome)."""
    began = time.monotonic()
    try:
        await wait_all_applied(database_url, produced, deadline_s)
    except TimeoutError:
        return None
    return time.monotonic() - began


async def assert_exactly_once_in_order(database_url: str, produced: Sequence[Produced]) -> None:
    """Fails unless every produced event has one effect, none else has any, in key order."""
    report = await history(database_url, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert report.order_violations == 0, str(report)


async def wait_effects_at_least(database_url: str, count: int, deadline_s: float = 120.0) -> None:
    """Waits until at least `count` effects are applied (the bus is flowing)."""

    async def reached() -> bool:
        return len(await read_effects(database_url)) >= count

    await wait_until_async(reached, deadline_s, f"{count} effects", interval=0.2)


async def wait_lag_zero(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    deadline_s: float = 60.0,
    ends: Mapping[TopicPartition, int] | None = None,
) -> None:
    """Waits until the group has committed every record of `topics` (up to `ends`)."""

    async def caught_up() -> bool:
        return await group_lag(bootstrap, group, topics, ends) == 0

    await wait_until_async(caught_up, deadline_s, f"group {group} to reach lag 0", interval=0.5)


async def history(database_url: str, produced: Sequence[Produced]) -> HistoryReport:
    """Returns the history checker's report for a test database."""
    return check_history(produced, await read_effects(database_url))


@asynccontextmanager
async def consumer_in_this_process(
    database_url: str,
    bootstrap: str,
    config: ConsumerConfig,
    handler: BatchHandler,
    *,
    metrics: BusMetrics | None = None,
    max_poll_interval_ms: int = 300_000,
    dead_letter_timeout_ms: int = 30_000,
    pool_size: int = 2,
    max_overflow: int = 10,
    own_probe: bool = True,
) -> AsyncIterator[None]:
    """Runs an EventConsumer of the test bus in this process while the block runs.

    `dead_letter_timeout_ms` bounds each request of its dead-letter producer. With
    `own_probe`, as a service runs it, the consumer asks the database its questions (does
    it answer, does an attempt wait on a lock) on connections of their own; else on the
    pool of `pool_size` + `max_overflow` connections that it applies events with.
    """
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    dead_letter_kafka = kafka.model_copy(update={"request_timeout_ms": dead_letter_timeout_ms})
    engine = create_async_engine(database_url, pool_size=pool_size, max_overflow=max_overflow)
    probe_engine = create_async_engine(database_url, poolclass=NullPool) if own_probe else None
    consumer = EventConsumer(
        config,
        consumer_factory=lambda: make_consumer(
            kafka,
            group_id=config.group_id,
            client_id="t",
            max_poll_interval_ms=max_poll_interval_ms,
        ),
        producer_factory=lambda: make_producer(dead_letter_kafka, client_id="t-dlq"),
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        inbox_table=INBOX,
        registry=step_registry(),
        handler=handler,
        metrics=BusMetrics() if metrics is None else metrics,
        probe_sessions=None if probe_engine is None else async_sessionmaker(probe_engine),
    )
    stop = asyncio.Event()
    try:
        async with run_in_background(consumer.run(stop), stop):
            yield
    finally:
        await engine.dispose()
        if probe_engine is not None:
            await probe_engine.dispose()
