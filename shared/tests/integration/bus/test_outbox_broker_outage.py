"""R11: with the broker down, business writes still commit and every event is published later.

On a private Apache Kafka broker (SIGKILLed, then restarted on the same log dir), 1,000
business operations commit during a deliberate outage of at least 10 s, each in its own
transaction writing a state row and its event to the outbox. After the restart the relay
publishes them all and a consumer applies each exactly once.
Negative control, protection switched off: the outbox. The naive operation commits its
state row, then publishes directly (`send_and_wait`, short `request_timeout_ms`, error
caught and logged as naive code would); the figure that must fail: `lost` > 0.

Also: the relay's housekeeping prunes published rows and leaves unpublished ones alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.kafka import ApacheKafkaBroker
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.advisory import MEMBER_LOCKS, SLOT_LOCKS
from cascade.shared.messaging.clients import make_producer
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.messaging.tables import key_slot
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import OUTBOX, make_steps
from cascade.shared.testing.fixtures import KafkaBrokerFactory
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import create_topics, record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
OUTAGE_S = 10.0  # the deliberate broker outage, measured
BUSINESS = Table(
    "business_step",
    MetaData(),
    Column("event_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("seq", Integer, nullable=False),
)


async def scalar(database_url: str, sql: str, **params: object) -> int:
    """Returns the integer result of one query."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text(sql), params) or 0)
    finally:
        await engine.dispose()


async def _create_business_table(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(BUSINESS.metadata.create_all)
    finally:
        await engine.dispose()


async def _private_broker(factory: KafkaBrokerFactory) -> tuple[ApacheKafkaBroker, tuple[str, str]]:
    broker = factory()
    topics = unique_name("events"), unique_name("dead-letters")
    await create_topics(broker.bootstrap_servers, [topics[0]], partitions=6)
    await create_topics(broker.bootstrap_servers, [topics[1]], partitions=1)
    return broker, topics


def _worker(
    workers: Callable[..., Worker], role: str, db: str, bootstrap: str, *extra: str
) -> Worker:
    return workers(role, "--db", db, "--bootstrap", bootstrap, *extra)


def _consumer(
    workers: Callable[..., Worker], db: str, bootstrap: str, topics: tuple[str, str]
) -> tuple[Worker, str]:
    group = unique_name("group")
    extra = ["--group", group, "--topic", topics[0], "--dead-letter-topic", topics[1]]
    return _worker(workers, "consume", db, bootstrap, *extra), group


def _state_row(event: Envelope) -> dict[str, object]:
    return {"event_id": event.id, "account_id": event.subject, "seq": int(event.data["seq"])}


async def _operation_with_outbox(
    sessions: async_sessionmaker[AsyncSession], topic: str, event: Envelope
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(insert(BUSINESS).values(_state_row(event)))
        await add_to_outbox(session, OUTBOX, [(topic, event)])


async def _naive_operation(
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    topic: str,
    event: Envelope,
) -> bool:
    async with sessions() as session, session.begin():
        await session.execute(insert(BUSINESS).values(_state_row(event)))
    try:
        await producer.send_and_wait(topic, event.to_bytes(), key=event.key)
    except KafkaError:
        return False  # naive code: logged, and the event is gone
    return True


async def _sit_out_outage(began: float) -> float:
    """Keeps the broker down for the deliberate outage; returns its measured length."""
    await asyncio.sleep(max(OUTAGE_S - (time.monotonic() - began), 0.0))
    return time.monotonic() - began


def _produced(events: Sequence[Envelope]) -> list[Produced]:
    return [Produced(e.id, e.subject, int(e.data["seq"])) for e in events]


async def _wait_count(
    database_url: str, sql: str, expected: int, deadline_s: float, **params: object
) -> None:
    async def reached() -> bool:
        return await scalar(database_url, sql, **params) == expected

    await wait_until_async(reached, deadline_s, f"{sql} to be {expected}")


async def _wait_unpublished(database_url: str, count: int, deadline_s: float) -> None:
    sql = "SELECT count(*) FROM outbox_pending"
    await _wait_count(database_url, sql, count, deadline_s)


async def _operations_during_outage(
    database_url: str, broker: ApacheKafkaBroker, topic: str, events: Sequence[Envelope]
) -> float:
    """Kills the broker, commits each operation in its own transaction; returns the outage."""
    began = time.monotonic()
    broker.kill9()
    engine = create_async_engine(database_url, pool_size=2)
    try:
        for event in events:  # every one must commit: none needs the broker
            await _operation_with_outbox(async_sessionmaker(engine), topic, event)
    finally:
        await engine.dispose()
    assert await scalar(database_url, "SELECT count(*) FROM business_step") == len(events)
    assert await scalar(database_url, "SELECT count(*) FROM outbox_message") == len(events)
    await _wait_unpublished(database_url, len(events), 1)  # nothing got out: broker down
    return await _sit_out_outage(began)


async def test_business_writes_commit_during_a_broker_outage_and_publish_after_recovery(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    await _create_business_table(bus_database)
    broker, topics = await _private_broker(kafka_broker_factory)
    _worker(workers, "relay", bus_database, broker.bootstrap_servers, "--batch-size", "100").start()
    joined = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
    await _wait_count(bus_database, joined, 1, 120, ns=MEMBER_LOCKS)
    steps = make_steps(N_EVENTS, 50)

    outage_s = await _operations_during_outage(bus_database, broker, topics[0], steps)
    assert outage_s >= OUTAGE_S
    broker.restart(timeout=120)
    recovered = time.monotonic()

    reader, group = _consumer(workers, bus_database, broker.bootstrap_servers, topics)
    reader.start()
    await _wait_unpublished(bus_database, 0, 120)
    published_after_s = time.monotonic() - recovered
    await wait_all_applied(bus_database, _produced(steps), deadline_s=120)
    await wait_lag_zero(broker.bootstrap_servers, group, [topics[0]], deadline_s=120)
    reader.stop()

    report = await history(bus_database, _produced(steps))
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert published_after_s <= 60, f"published {published_after_s:.1f}s after recovery"


async def _naive_operations_during_outage(
    database_url: str, producer: AIOKafkaProducer, topic: str, events: Sequence[Envelope]
) -> int:
    """Runs the naive operations 100 at a time; returns how many sends were acked."""
    engine = create_async_engine(database_url, pool_size=10, max_overflow=0)
    sessions = async_sessionmaker(engine)
    acked = 0
    try:
        for start in range(0, len(events), 100):
            chunk = events[start : start + 100]
            outcomes = await asyncio.gather(
                *(_naive_operation(sessions, producer, topic, e) for e in chunk)
            )
            acked += sum(outcomes)
    finally:
        await engine.dispose()
    return acked


async def test_negative_control_publishing_directly_during_a_broker_outage_loses_events(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    await _create_business_table(bus_database)
    broker, topics = await _private_broker(kafka_broker_factory)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=1000)
    await producer.start()
    steps = make_steps(N_EVENTS, 50)

    began = time.monotonic()
    broker.kill9()
    try:
        acked = await _naive_operations_during_outage(bus_database, producer, topics[0], steps)
    finally:
        await producer.stop()
    assert await _sit_out_outage(began) >= OUTAGE_S
    broker.restart(timeout=120)

    # After recovery the pipeline works: a new operation's event is applied.
    sentinel = await produce_envelopes(
        broker.bootstrap_servers, topics[0], make_steps(1, 1, start=N_EVENTS)
    )
    reader, group = _consumer(workers, bus_database, broker.bootstrap_servers, topics)
    reader.start()
    await wait_all_applied(bus_database, sentinel, deadline_s=120)
    await wait_lag_zero(broker.bootstrap_servers, group, [topics[0]], deadline_s=120)
    reader.stop()

    assert await scalar(bus_database, "SELECT count(*) FROM business_step") == N_EVENTS
    report = await history(bus_database, _produced(steps))
    assert report.lost > 0, f"protection: the outbox; figure: lost; acked={acked}; {report}"


async def _commit_each(database_url: str, topic: str, events: Sequence[Envelope]) -> None:
    engine = create_async_engine(database_url, pool_size=2)
    try:
        for start in range(0, len(events), 10):
            async with async_sessionmaker(engine)() as session, session.begin():
                await add_to_outbox(
                    session, OUTBOX, [(topic, e) for e in events[start : start + 10]]
                )
    finally:
        await engine.dispose()


async def test_relay_housekeeping_prunes_published_rows_and_keeps_unpublished_ones(
    bus_database: str, kafka_bootstrap_servers: str, bus_topics: tuple[str, str]
) -> None:
    steps = make_steps(N_EVENTS, 50)
    held_slot = key_slot(steps[0].subject)
    held = sum(1 for e in steps if key_slot(e.subject) == held_slot)
    # The test holds one key slot's lock, so the relay cannot publish that slot's rows.
    blocker = create_async_engine(bus_database, poolclass=NullPool)
    lock = await blocker.connect()
    await lock.execute(text("SELECT pg_advisory_lock(:ns, :s)"), {"ns": SLOT_LOCKS, "s": held_slot})
    await lock.commit()
    await _commit_each(bus_database, bus_topics[0], steps)

    engine = create_async_engine(bus_database, pool_size=2)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap_servers)
    settings = RelaySettings(retention=timedelta(seconds=0), housekeeping_every_s=0.1)
    relay = OutboxRelay(
        engine,
        OUTBOX,
        lambda: make_producer(kafka, client_id="prune-test"),
        metrics=BusMetrics(),
        settings=settings,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _wait_count(bus_database, "SELECT count(*) FROM outbox_message", held, 120)
        await _wait_unpublished(bus_database, held, 1)
    finally:
        stop.set()
        await task
        await engine.dispose()
        await lock.close()
        await blocker.dispose()
    assert 0 < held < N_EVENTS
    assert await record_count(kafka_bootstrap_servers, [bus_topics[0]]) == N_EVENTS - held
