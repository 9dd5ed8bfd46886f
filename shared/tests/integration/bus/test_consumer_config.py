"""R15 and R20: a new group reads from the earliest offset; unsafe client settings are refused.

R15: N events produced before a brand-new consumer group exists are all processed (the
aiokafka default, `latest`, would process none of them: the guard below names it).
R20: `verify_producer` / `verify_consumer` pass the platform's clients and refuse each
unsafe setting by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cascade.shared.messaging.clients import make_consumer, make_producer
from cascade.shared.messaging.safety import (
    UnsafeConfigError,
    is_transactional,
    verify_consumer,
    verify_producer,
)
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import make_steps
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.kafka import unique_name

pytestmark = [pytest.mark.integration]

N_EVENTS = 1000
BOOTSTRAP = "127.0.0.1:1"  # never contacted: the clients are built, checked, closed
MAX_BATCH_SECONDS = 60.0


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    """Builds unstarted producers and consumers; closes them all at teardown."""
    made: list[AIOKafkaProducer | AIOKafkaConsumer] = []

    def build(kind: type[AIOKafkaProducer | AIOKafkaConsumer], **kwargs: Any) -> Any:
        client = kind(bootstrap_servers=BOOTSTRAP, **kwargs)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.stop()


def _violations(error: pytest.ExceptionInfo[UnsafeConfigError]) -> str:
    return " | ".join(error.value.violations)


async def test_platform_producer_and_consumer_pass_the_guard() -> None:
    settings = KafkaSettings(bootstrap_servers=BOOTSTRAP)
    producer = make_producer(settings, client_id="guard-test")
    consumer = make_consumer(settings, group_id="guard-test", client_id="guard-test")
    try:
        verify_producer(producer, embedded_broker=False)
        verify_consumer(consumer, max_batch_seconds=MAX_BATCH_SECONDS)
    finally:
        await producer.stop()
        await consumer.stop()


async def test_embedded_broker_producer_without_idempotence_is_allowed_only_there() -> None:
    settings = KafkaSettings(bootstrap_servers=BOOTSTRAP, enable_idempotence=False)
    producer = make_producer(settings, client_id="guard-test")
    try:
        verify_producer(producer, embedded_broker=True)
        with pytest.raises(UnsafeConfigError) as refused:
            verify_producer(producer, embedded_broker=False)
    finally:
        await producer.stop()
    assert refused.value.violations == (
        "enable_idempotence=False (must be True except on the embedded broker)",
    )


async def test_aiokafka_default_producer_is_refused_for_acks_and_idempotence(
    clients: Callable[..., Any],
) -> None:
    producer = clients(AIOKafkaProducer)

    with pytest.raises(UnsafeConfigError) as refused:
        verify_producer(producer, embedded_broker=False)

    assert len(refused.value.violations) == 2
    assert "acks=1" in _violations(refused)
    assert "enable_idempotence=False" in _violations(refused)


async def test_producer_with_acks_one_is_refused_even_on_the_embedded_broker(
    clients: Callable[..., Any],
) -> None:
    producer = clients(AIOKafkaProducer, acks=1)

    with pytest.raises(UnsafeConfigError) as refused:
        verify_producer(producer, embedded_broker=True)

    assert refused.value.violations == ("acks=1 (must be 'all')",)


async def test_aiokafka_default_consumer_is_refused_for_auto_commit_and_latest(
    clients: Callable[..., Any],
) -> None:
    consumer = clients(AIOKafkaConsumer, group_id="g")

    with pytest.raises(UnsafeConfigError) as refused:
        verify_consumer(consumer, max_batch_seconds=MAX_BATCH_SECONDS)

    assert len(refused.value.violations) == 2
    assert "enable_auto_commit=True" in _violations(refused)
    assert "auto_offset_reset='latest'" in _violations(refused)


async def test_consumer_whose_poll_interval_is_shorter_than_a_batch_is_refused(
    clients: Callable[..., Any],
) -> None:
    consumer = clients(
        AIOKafkaConsumer,
        group_id="g",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=30_000,
    )

    with pytest.raises(UnsafeConfigError) as refused:
        verify_consumer(consumer, max_batch_seconds=MAX_BATCH_SECONDS)

    assert len(refused.value.violations) == 1
    assert "max_poll_interval_ms=30000" in _violations(refused)


async def test_read_uncommitted_consumer_is_refused_when_a_producer_is_transactional(
    clients: Callable[..., Any],
) -> None:
    transactional = clients(AIOKafkaProducer, transactional_id="tx-1")
    plain = make_consumer(
        KafkaSettings(bootstrap_servers=BOOTSTRAP), group_id="g", client_id="guard-test"
    )
    try:
        verify_producer(transactional, embedded_broker=False)
        assert is_transactional(transactional)
        with pytest.raises(UnsafeConfigError) as refused:
            verify_consumer(
                plain, max_batch_seconds=MAX_BATCH_SECONDS, transactional_producers=True
            )
    finally:
        await plain.stop()

    assert refused.value.violations == (
        "isolation_level='read_uncommitted' (must be 'read_committed' when a producer "
        "is transactional)",
    )


async def test_every_violation_is_named_at_once(clients: Callable[..., Any]) -> None:
    consumer = clients(AIOKafkaConsumer, group_id="g", max_poll_interval_ms=1_000)

    with pytest.raises(UnsafeConfigError) as refused:
        verify_consumer(consumer, max_batch_seconds=MAX_BATCH_SECONDS, transactional_producers=True)

    named = [v.split("=")[0] for v in refused.value.violations]
    assert named == [
        "enable_auto_commit",
        "auto_offset_reset",
        "max_poll_interval_ms",
        "isolation_level",
    ]
    assert str(refused.value).startswith("unsafe consumer configuration: ")


@pytest.mark.slow
async def test_brand_new_group_processes_every_event_produced_before_it_existed(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    events, dead_letters = bus_topics
    produced = await produce_envelopes(kafka_bootstrap_servers, events, make_steps(N_EVENTS, 50))
    group = unique_name("brand-new-group")
    worker = workers(
        "consume",
        *("--db", bus_database, "--bootstrap", kafka_bootstrap_servers),
        *("--group", group, "--topic", events, "--dead-letter-topic", dead_letters),
    ).start()

    await wait_all_applied(bus_database, produced, deadline_s=120)
    await wait_lag_zero(kafka_bootstrap_servers, group, [events], deadline_s=120)
    worker.stop()

    report = await history(bus_database, produced)
    assert (report.produced, report.lost, report.duplicated) == (N_EVENTS, 0, 0), str(report)
