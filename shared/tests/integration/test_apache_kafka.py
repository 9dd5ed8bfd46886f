"""Apache Kafka from Maven jars: round trip, durability across a crash, no auto-create."""

from __future__ import annotations

import asyncio

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cascade.shared.testing.fixtures import KafkaBrokerFactory
from cascade.shared.testing.kafka import consume, create_topics, list_topics, produce, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_records_come_back_in_order_through_a_consumer_group(
    kafka_bootstrap_servers: str,
) -> None:
    topic = unique_name("roundtrip")
    await create_topics(kafka_bootstrap_servers, [topic])
    sent = [f"record-{i:03d}".encode() for i in range(100)]

    acked = await produce(kafka_bootstrap_servers, topic, sent, enable_idempotence=True)
    received = await consume(kafka_bootstrap_servers, topic, len(sent))

    assert acked == sent
    assert received == sent


async def test_a_topic_that_was_never_declared_cannot_be_produced_to(
    kafka_bootstrap_servers: str,
) -> None:
    topic = unique_name("undeclared")
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=3_000,  # how long the producer waits for the topic's metadata
    )
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(topic, b"lost")
    finally:
        await producer.stop()

    assert topic not in await list_topics(kafka_bootstrap_servers)


async def test_acknowledged_records_survive_a_broker_crash(
    kafka_broker_factory: KafkaBrokerFactory,
) -> None:
    broker = await asyncio.to_thread(kafka_broker_factory)
    topic = unique_name("durable")
    await create_topics(broker.bootstrap_servers, [topic])
    sent = [f"payment-{i:03d}".encode() for i in range(200)]
    acked = await produce(broker.bootstrap_servers, topic, sent, enable_idempotence=True)
    assert len(acked) == len(sent)
    pid = broker.pid
    assert pid is not None

    broker.kill9()

    assert not broker.is_running()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    await asyncio.to_thread(broker.restart)
    assert broker.is_running()
    assert broker.pid != pid
    assert await consume(broker.bootstrap_servers, topic, len(acked)) == acked
