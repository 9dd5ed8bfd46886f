"""R14: with PostgreSQL down, a consumer pauses (commits no offset) and recovers by itself.

A consumer worker on a private PostgreSQL is mid-stream (1,000 events produced, at least
50 applied) when PostgreSQL is SIGKILLed and kept down for a deliberate >= 10 s. The
group's committed offsets are sampled at the start and near the end of the outage: they
must not move, and none may lie beyond the last event the database committed before the
outage. After the restart: everything applied, 0 lost, 0 duplicated, lag 0 within 60 s,
and the worker process never died (it retried).

Negative control, protection switched off: offsets committed after the DB commit
(`--offsets-first`); the figure that must fail: offsets committed beyond the last
DB-committed event > 0 (the batch fetched during the outage is committed to Kafka while
its database transaction fails). Without a crash the broken consumer still retries and
loses nothing, so `lost` is not the figure. In the control the kill waits until the
consumer is idle and 100 events arrive during the outage: a transaction in flight at the
kill may have committed or not, and a consumer retrying it would fetch nothing new.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.postgres import EmbeddedPostgres
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.testing.bus import make_steps
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced, offsets_beyond_database
from cascade.shared.testing.kafka import committed_offsets, event_ids_by_partition, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
EXTRA_DURING_OUTAGE = 100
OUTAGE_S = 10.0  # the deliberate database outage, measured
Offsets = dict[TopicPartition, int]


async def _count(database_url: str, sql: str) -> int:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text(sql)) or 0)
    finally:
        await engine.dispose()


async def _applied_before(database_url: str, moment: datetime) -> set[str]:
    """Returns the event ids whose inbox row (same transaction as the effect) predates `moment`."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    sql = "SELECT event_id FROM inbox_message WHERE processed_at < :moment"
    try:
        async with engine.connect() as connection:
            return set((await connection.scalars(text(sql), {"moment": moment})).all())
    finally:
        await engine.dispose()


def _consumer(
    workers: Callable[..., Worker], db: str, bootstrap: str, topics: tuple[str, str], *extra: str
) -> tuple[Worker, str]:
    group = unique_name("group")
    args = ["--db", db, "--bootstrap", bootstrap, "--group", group, "--topic", topics[0]]
    args += ["--dead-letter-topic", topics[1], "--max-records", "10"]
    return workers("consume", *args, *extra), group


async def _outage_mid_stream(
    server: EmbeddedPostgres,
    db: str,
    bootstrap: str,
    group: str,
    topic: str,
    during: Callable[[], Awaitable[object]] | None = None,
) -> tuple[Offsets, Offsets, datetime]:
    """Kills PostgreSQL for >= OUTAGE_S; returns the offsets sampled during the outage.

    Without `during`, the kill lands mid-stream. With it, the kill waits until the consumer
    is idle (everything applied and committed), so no transaction is in flight whose fate
    is ambiguous, and `during` then gives it records to fetch while the database is down.
    """
    if during is None:
        await wait_until_async(
            lambda: _at_least(db, 50), 120, "the consumer to apply its first events", interval=0.02
        )
    else:
        await wait_until_async(lambda: _at_least(db, N_EVENTS), 120, "the stream to be applied")
        await wait_lag_zero(bootstrap, group, [topic], deadline_s=60)
    began = time.monotonic()
    server.kill9()
    if during is not None:
        await during()
    at_start = await committed_offsets(bootstrap, group)
    await asyncio.sleep(max(OUTAGE_S - 1.0 - (time.monotonic() - began), 0.0))
    near_end = await committed_offsets(bootstrap, group)
    await asyncio.sleep(max(OUTAGE_S - (time.monotonic() - began), 0.0))
    outage_s = time.monotonic() - began
    assert outage_s >= OUTAGE_S
    # Nothing commits while the server is down: inbox rows stamped before this instant
    # are exactly those the database had committed before the outage.
    restarting_at = datetime.now(UTC)
    server.start(timeout=120)
    return at_start, near_end, restarting_at


async def _at_least(database_url: str, count: int) -> bool:
    return await _count(database_url, "SELECT count(*) FROM bus_effect") >= count


async def _run(
    workers: Callable[..., Worker],
    postgres: tuple[EmbeddedPostgres, str],
    bootstrap: str,
    topics: tuple[str, str],
    *flags: str,
    during: Callable[[], Awaitable[object]] | None = None,
) -> tuple[list[Produced], Worker, str, tuple[Offsets, Offsets, datetime]]:
    server, db = postgres
    produced = await produce_envelopes(bootstrap, topics[0], make_steps(N_EVENTS, 50))
    worker, group = _consumer(workers, db, bootstrap, topics, *flags)
    worker.start()
    outage = await _outage_mid_stream(server, db, bootstrap, group, topics[0], during)
    return produced, worker, group, outage


async def test_consumer_commits_no_offset_while_the_database_is_down_and_recovers(
    workers: Callable[..., Worker],
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    db = private_postgres[1]
    produced, worker, group, (at_start, near_end, restarting_at) = await _run(
        workers, private_postgres, kafka_bootstrap_servers, bus_topics
    )
    recovered = time.monotonic()
    await wait_all_applied(db, produced, deadline_s=60)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=60)
    recovery_s = time.monotonic() - recovered
    assert worker.process is not None
    assert worker.process.poll() is None, "the worker died: it must retry, not exit"
    worker.stop()

    report = await history(db, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert sum(at_start.values()) < N_EVENTS, "the outage began after the stream had ended"
    assert near_end == at_start, "offsets moved while the database was down"
    positions = await event_ids_by_partition(kafka_bootstrap_servers, bus_topics[0], N_EVENTS)
    assert (
        offsets_beyond_database(near_end, positions, await _applied_before(db, restarting_at)) == 0
    )
    assert recovery_s <= 60


async def test_negative_control_committing_offsets_first_runs_ahead_of_the_database(
    workers: Callable[..., Worker],
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    db = private_postgres[1]

    async def more_events_during_the_outage() -> object:
        # However fast the consumer was before the kill, it now fetches records whose
        # database transaction cannot commit: the control cannot miss the window.
        extra = make_steps(EXTRA_DURING_OUTAGE, 50, start=N_EVENTS)
        return await produce_envelopes(kafka_bootstrap_servers, bus_topics[0], extra)

    _, worker, _, (_, near_end, restarting_at) = await _run(
        workers,
        private_postgres,
        kafka_bootstrap_servers,
        bus_topics,
        "--offsets-first",
        during=more_events_during_the_outage,
    )
    worker.stop()

    total = N_EVENTS + EXTRA_DURING_OUTAGE
    positions = await event_ids_by_partition(kafka_bootstrap_servers, bus_topics[0], total)
    beyond = offsets_beyond_database(near_end, positions, await _applied_before(db, restarting_at))
    assert beyond > 0, (
        "protection: offsets committed after the DB commit; "
        f"figure: offsets committed beyond the last DB-committed event = {beyond}"
    )
