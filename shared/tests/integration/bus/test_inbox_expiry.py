"""The inbox forgets an event id only once the event cannot come back.

The consumer dates each inbox row with the time its topic still needs it remembered
(ConsumerConfig.inbox_keep_s; a topic not listed gets the longest). The sweep deletes the
rows past that time, a block range per statement, and nothing else; one replica at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.advisory import INBOX_SWEEP_LOCK
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.inbox_sweep import (
    InboxSweep,
    SweepSettings,
    delete_expired,
    measure_inbox,
)
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
from cascade.shared.testing.bus import INBOX, make_steps, read_effects, record_effects
from cascade.shared.testing.harness import consumer_in_this_process, produce_envelopes
from cascade.shared.testing.kafka import create_topics, unique_name

pytestmark = pytest.mark.integration

ROWS = 3_000  # about 30 blocks of the inbox
EXPIRED = ROWS // 3
FAST = SweepSettings(blocks_per_statement=4, statement_pause_s=0.0, retry_s=0.1)


@pytest.fixture
async def engine(bus_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(bus_database, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def _keeps_by_event(engine: AsyncEngine) -> dict[str, float]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT event_id, extract(epoch FROM expires_at - processed_at) FROM inbox_message"
            )
        )
        return {event_id: float(seconds) for event_id, seconds in rows}


async def _record(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    await record_effects(session, events, "expiry-test")


async def test_the_consumer_dates_each_row_by_its_topic(
    engine: AsyncEngine, bus_database: str, kafka_bootstrap_servers: str
) -> None:
    listed, unlisted, dead_letters = (unique_name(n) for n in ("listed", "unlisted", "dlq"))
    await create_topics(kafka_bootstrap_servers, [listed, unlisted, dead_letters])
    config = ConsumerConfig(
        unique_name("expiry"), (listed, unlisted), dead_letters, inbox_keep_s={listed: 3_600}
    )
    first, second = make_steps(5, 5), make_steps(5, 5, start=5)
    async with consumer_in_this_process(bus_database, kafka_bootstrap_servers, config, _record):
        # One topic at a time: a batch from both would take the longer time for all.
        for topic, steps, applied in ((listed, first, 5), (unlisted, second, 10)):
            await produce_envelopes(kafka_bootstrap_servers, topic, steps)

            async def all_applied(count: int = applied) -> bool:
                return len(await read_effects(bus_database)) == count

            await wait_until_async(all_applied, 60, f"{applied} events to be applied")

    keeps = await _keeps_by_event(engine)

    assert set(keeps) == {step.id for step in first + second}
    # A redelivery (after a consumer's restart) would add its delay: not more than a minute.
    assert all(3_600 <= keeps[step.id] < 3_660 for step in first), keeps
    assert all(INBOX_KEEP_UNLISTED_S <= keeps[s.id] < INBOX_KEEP_UNLISTED_S + 60 for s in second)


async def _fill_inbox(engine: AsyncEngine) -> None:
    """ROWS rows, every third expired a second ago, the others expiring in a day."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO inbox_message (consumer_group, event_id, expires_at) "
                "SELECT 'g', 'e-' || n, CASE WHEN n % 3 = 0 THEN now() - interval '1 second' "
                "ELSE now() + interval '1 day' END FROM generate_series(1, :rows) n"
            ),
            {"rows": ROWS},
        )


async def _left(engine: AsyncEngine) -> tuple[int, int]:
    """Returns the rows left, and those of them past their expiry."""
    async with engine.connect() as connection:
        left, expired = (
            await connection.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE expires_at < now()) FROM inbox_message"
                )
            )
        ).one()
        return int(left), int(expired)


@pytest.mark.parametrize("start_block", [0, 13])  # 13: within a range of 4, round to it
async def test_a_pass_deletes_the_expired_rows_and_only_them(
    engine: AsyncEngine, start_block: int
) -> None:
    await _fill_inbox(engine)
    registry = CollectorRegistry()
    sweep = InboxSweep(engine, INBOX, BusMetrics(registry), FAST)

    async with engine.connect() as connection:
        swept = await sweep.sweep_once(connection, asyncio.Event(), start_block)

    assert swept == EXPIRED
    assert await _left(engine) == (ROWS - EXPIRED, 0)
    assert registry.get_sample_value("cascade_inbox_swept_rows_total") == EXPIRED
    assert registry.get_sample_value("cascade_inbox_sweep_finished_timestamp_seconds")


async def test_the_inbox_size_is_measured_from_the_catalogue(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:  # its maps would change the size in between
        await connection.execute(text("ALTER TABLE inbox_message SET (autovacuum_enabled = off)"))
    await _fill_inbox(engine)
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE inbox_message"))
        size = await connection.scalar(text("SELECT pg_total_relation_size('inbox_message')"))
    registry = CollectorRegistry()

    await measure_inbox(engine, INBOX, BusMetrics(registry))

    assert registry.get_sample_value("cascade_inbox_bytes") == size > 0
    assert registry.get_sample_value("cascade_inbox_rows_estimate") == ROWS


async def test_each_statement_reads_only_its_block_range(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        plan = await connection.scalars(
            text(f"EXPLAIN {delete_expired(INBOX.name).text}"),
            {"first": (0, 0), "end": (4, 0)},
        )
        lines = list(plan)

    assert any("Tid Range Scan" in line for line in lines), "\n".join(lines)


async def test_only_the_replica_holding_the_lock_sweeps(
    engine: AsyncEngine, bus_database: str
) -> None:
    await _fill_inbox(engine)
    pooled = create_async_engine(bus_database)  # as a service's: connections go back to a pool
    sweep, stop = InboxSweep(pooled, INBOX, BusMetrics(), FAST), asyncio.Event()
    async with engine.connect() as other_replica:
        await other_replica.execute(
            text("SELECT pg_advisory_lock(:ns, 0)"), {"ns": INBOX_SWEEP_LOCK}
        )
        await other_replica.commit()
        async with engine.connect() as connection:
            await sweep._sweep_while_holding_lock(connection, stop)  # returns: not its turn

        assert await _left(engine) == (ROWS, EXPIRED)

    task = asyncio.create_task(sweep.run(stop))  # the lock is free once the other has gone
    try:

        async def swept() -> bool:
            return await _left(engine) == (ROWS - EXPIRED, 0)

        await wait_until_async(swept, 30, "the sweep to take over")
    finally:
        stop.set()
        await task
    try:
        async with engine.connect() as connection:
            held = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ),
                {"ns": INBOX_SWEEP_LOCK},
            )
    finally:
        await pooled.dispose()
    assert held == 0, "the sweep's pooled session kept its lock after stopping"
