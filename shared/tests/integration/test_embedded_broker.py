"""The embedded Tansu broker: produce and consume with idempotence off."""

from __future__ import annotations

import pytest

from cascade.shared.infra.tansu import EmbeddedKafkaBroker
from cascade.shared.messaging.admin import apply_topology
from cascade.shared.messaging.topic_drift import topology_drift
from cascade.shared.testing.kafka import consume, create_topics, list_topics, produce, unique_name

pytestmark = pytest.mark.integration


async def test_records_round_trip_through_tansu(tansu: EmbeddedKafkaBroker) -> None:
    topic = unique_name("embedded")
    await create_topics(tansu.bootstrap_servers, [topic])
    sent = [f"notice-{i:02d}".encode() for i in range(50)]

    # Tansu answers InitProducerId with an error: idempotence must be off here.
    acked = await produce(tansu.bootstrap_servers, topic, sent, enable_idempotence=False)
    received = await consume(tansu.bootstrap_servers, topic, len(sent))

    assert acked == sent
    assert received == sent


def test_a_second_process_finds_the_running_broker(tansu: EmbeddedKafkaBroker) -> None:
    attached = EmbeddedKafkaBroker.attach(tansu.data_dir)

    assert attached.is_running()
    assert attached.pid == tansu.pid
    assert attached.bootstrap_servers == tansu.bootstrap_servers


async def test_every_declared_topic_is_created_on_tansu(tansu: EmbeddedKafkaBroker) -> None:
    # What the services do at start-up on `make demo`: their configs must suit Tansu too.
    declared = await apply_topology(tansu.bootstrap_servers)

    assert set(declared) <= set(await list_topics(tansu.bootstrap_servers))
    # ...and find no drift: Tansu reports the configs they were created with.
    assert await topology_drift(tansu.bootstrap_servers) == {}
