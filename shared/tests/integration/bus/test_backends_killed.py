"""R14: database backends killed mid-transaction (pg_terminate_backend), under load.

A relay process publishes business operations as they commit, and a consumer process
applies them. The consumer's handler holds each transaction open for HOLD_MS, as a slow
business rule would. For STORM_S a killer then terminates, every KILL_EVERY_S, every
backend of the database that is inside a transaction, and every KILL_ALL_EVERY_S every
backend, idle ones too:
- every consumer transaction dies, mid-statement or between statements;
- the relay's session dies, and with it the advisory locks on its key slots;
- some business transactions die too, and their writer retries them, as a client would.
Neither process is restarted by the test: they must recover by themselves.

Pass criteria (matrix R14):
- at two moments in the storm, no committed offset lies beyond an event the database had
  not committed;
- within 60 s of the storm's end, every operation committed before it is applied and
  the group's lag is 0;
- at the end, 0 lost, 0 duplicated, 0 phantom effects, per-key order intact, and no
  dead letter, over at least 1,000 operations.

Negative controls, one protection switched off in each:
- transient failures retried without counting against the events (`--count-unavailable`):
  the killed attempts park good events; the figure is good events dead-lettered > 0 (the
  checker counts them as lost until they are replayed);
- offsets committed after the database commit (`--offsets-first`): the figure is offsets
  committed beyond the last DB-committed event > 0.
Not exercised here: a COMMIT that is durable but whose reply is lost, where the inbox
absorbs the retry (the consumer crash tests cover that window).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiokafka.structs import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.testing.harness import (
    Worker,
    assert_exactly_once_in_order,
    wait_all_applied,
    wait_effects_at_least,
    wait_lag_zero,
)
from cascade.shared.testing.history import offsets_beyond_database
from cascade.shared.testing.kafka import (
    committed_offsets,
    create_topics,
    end_offsets,
    event_ids_by_partition,
    record_count,
    unique_name,
)
from cascade.shared.testing.load import BusinessLoad

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORM_S = 12.0
KILL_EVERY_S = 0.05  # far shorter than HOLD_MS: no consumer transaction outlives the storm
KILL_ALL_EVERY_S = 3.0
HOLD_MS = 500
SAMPLES_AT_S = (3.0, STORM_S - 1.5)  # into the storm
RATE_PER_SECOND = 100
MIN_OPERATIONS = 1000
HEAL_DEADLINE_S = 60.0  # R14: recovery within 60 s
WAIT_S = 120.0  # how long a wait may run before the test gives up (figures are asserted)
# The test's own connections, which the killer spares.
OBSERVER = "cascade-test-observer"
Offsets = dict[TopicPartition, int]

_KILL = text(
    "SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend' AND application_name <> :observer"
    " AND (CAST(:everyone AS boolean)"
    " OR state IN ('active', 'idle in transaction', 'idle in transaction (aborted)'))"
)


def _observer_engine(database_url: str) -> AsyncEngine:
    settings = {"application_name": OBSERVER}
    return create_async_engine(
        database_url, poolclass=NullPool, connect_args={"server_settings": settings}
    )


@dataclass
class BackendKiller:
    """Terminates the database's backends, those in a transaction above all."""

    database_url: str
    mid_transaction: int = 0  # backends killed inside a transaction
    idle: int = 0

    async def storm(self, seconds: float) -> None:
        engine = _observer_engine(self.database_url)
        ends, everyone_at = time.monotonic() + seconds, 0.0
        try:
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                while (now := time.monotonic()) < ends:
                    everyone = now >= everyone_at
                    if everyone:
                        everyone_at = now + KILL_ALL_EVERY_S
                    params = {"observer": OBSERVER, "everyone": everyone}
                    for state, killed in await connection.execute(_KILL, params):
                        if killed and state == "idle":
                            self.idle += 1
                        elif killed:
                            self.mid_transaction += 1
                    await asyncio.sleep(KILL_EVERY_S)  # the storm's rhythm
        finally:
            await engine.dispose()


@dataclass
class StormRun:
    """A storm under load: what ran, and the offsets and inbox sampled during it."""

    load: BusinessLoad
    killer: BackendKiller
    relay: Worker
    consumer: Worker
    topic: str
    dead_letter_topic: str
    group: str
    samples: list[tuple[Offsets, set[str]]] = field(default_factory=list, repr=False)

    def still_running(self) -> bool:
        return all(
            w.process is not None and w.process.poll() is None for w in (self.relay, self.consumer)
        )

    def logged(self, worker: Worker, event: str) -> bool:
        return event in worker.log_file.read_text(errors="replace")

    async def offsets_beyond_database(self, bootstrap: str) -> list[int]:
        """For each sample, the committed offsets beyond what the database had committed."""
        records = await record_count(bootstrap, [self.topic])
        positions = await event_ids_by_partition(bootstrap, self.topic, records)
        return [offsets_beyond_database(o, positions, in_db) for o, in_db in self.samples]


async def _inbox_ids(database_url: str) -> set[str]:
    engine = _observer_engine(database_url)
    try:
        async with engine.connect() as connection:
            return set(await connection.scalars(text("SELECT event_id FROM inbox_message")))
    finally:
        await engine.dispose()


def _start_bus(
    workers: Callable[..., Worker], db: str, bootstrap: str, topics: tuple[str, str], *flags: str
) -> tuple[Worker, Worker, str]:
    group = unique_name("group")
    common = ["--db", db, "--bootstrap", bootstrap]
    relay = workers("relay", *common, "--batch-size", "100").start()
    consumer = workers(
        "consume",
        *common,
        *("--group", group, "--topic", topics[0], "--dead-letter-topic", topics[1]),
        *("--max-records", "100", "--hold-ms", str(HOLD_MS), *flags),
    ).start()
    return relay, consumer, group


@asynccontextmanager
async def _storm_under_load(
    workers: Callable[..., Worker], db: str, bootstrap: str, *flags: str
) -> AsyncIterator[StormRun]:
    """Runs the bus under load through a storm of kills; the load goes on in the block."""
    topics = (unique_name("events"), unique_name("dlt"))
    await create_topics(bootstrap, [topics[0]], partitions=6)
    await create_topics(bootstrap, [topics[1]], partitions=1)
    relay, consumer, group = _start_bus(workers, db, bootstrap, topics, *flags)
    load = BusinessLoad(db, topics[0], per_second=RATE_PER_SECOND)
    run = StormRun(load, BackendKiller(db), relay, consumer, *topics, group)
    loading = asyncio.create_task(load.run())
    try:
        await wait_effects_at_least(db, 100, WAIT_S)  # the bus is flowing before the storm
        storm_began = time.monotonic()
        storm = asyncio.create_task(run.killer.storm(STORM_S))
        for at_s in SAMPLES_AT_S:
            await asyncio.sleep(max(storm_began + at_s - time.monotonic(), 0))  # into the storm
            offsets = await committed_offsets(bootstrap, group)
            # Read after the offsets: an honest consumer committed these events first.
            run.samples.append((offsets, await _inbox_ids(db)))
        await storm
        yield run
    finally:
        load.stop()
        await loading


async def test_backends_killed_mid_transaction_lose_and_double_nothing(
    workers: Callable[..., Worker], bus_database: str, kafka_bootstrap_servers: str
) -> None:
    bootstrap = kafka_bootstrap_servers
    async with _storm_under_load(workers, bus_database, bootstrap) as run:
        healing = time.monotonic()
        await wait_all_applied(bus_database, list(run.load.committed), deadline_s=WAIT_S)
        ends = await end_offsets(bootstrap, [run.topic])
        await wait_lag_zero(bootstrap, run.group, [run.topic], deadline_s=WAIT_S, ends=ends)
        healed_s = time.monotonic() - healing

        async def enough_committed() -> bool:
            return len(run.load.committed) >= MIN_OPERATIONS

        await wait_until_async(enough_committed, WAIT_S, f"{MIN_OPERATIONS} operations")

    assert run.still_running(), "the relay and the consumer must ride the kills out"
    # The storm reached what it was meant to: transactions in flight, the consumer's, the
    # relay's session and the business transactions.
    assert run.killer.mid_transaction >= 10, f"killed mid-transaction: {run.killer}"
    assert run.logged(run.consumer, "consumer.transient_failure")
    assert run.logged(run.relay, "outbox.relay_retrying")
    assert run.load.retries > 0, "no business transaction was killed"
    assert await run.offsets_beyond_database(bootstrap) == [0] * len(SAMPLES_AT_S)
    assert healed_s <= HEAL_DEADLINE_S, f"recovered only {healed_s:.1f}s after the storm"
    await wait_all_applied(bus_database, run.load.committed, deadline_s=WAIT_S)
    await wait_lag_zero(bootstrap, run.group, [run.topic], deadline_s=WAIT_S)
    await assert_exactly_once_in_order(bus_database, run.load.committed)
    assert await record_count(bootstrap, [run.dead_letter_topic]) == 0, "a good event was parked"


async def test_negative_control_counting_killed_attempts_parks_good_events(
    workers: Callable[..., Worker], bus_database: str, kafka_bootstrap_servers: str
) -> None:
    bootstrap = kafka_bootstrap_servers
    async with _storm_under_load(workers, bus_database, bootstrap, "--count-unavailable") as run:
        pass  # the load stops when the storm is over
    # Every event is good: a dead letter is an event the service did not apply, and the
    # history checker counts it as lost until someone replays it.
    parked = await record_count(bootstrap, [run.dead_letter_topic])
    assert parked > 0, (
        "protection: transient failures retried without counting against the events; "
        f"figure: good events dead-lettered = {parked}"
    )


async def test_negative_control_committing_offsets_first_runs_ahead_of_the_database(
    workers: Callable[..., Worker], bus_database: str, kafka_bootstrap_servers: str
) -> None:
    bootstrap = kafka_bootstrap_servers
    async with _storm_under_load(workers, bus_database, bootstrap, "--offsets-first") as run:
        pass
    beyond = await run.offsets_beyond_database(bootstrap)
    assert max(beyond) > 0, (
        "protection: offsets committed after the DB commit; "
        f"figure: offsets committed beyond the last DB-committed event = {beyond}"
    )
