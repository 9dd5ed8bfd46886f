"""publish_all sends the batches it builds at once: the producer's linger_ms does not hold them.

The relay builds complete record batches itself, so lingering for more records only delays
every claim (5 ms each with the platform's producer). Checked with a producer that lingers
for a minute: the records must still be acknowledged well within it.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from cascade.shared.messaging.batching import publish_all
from cascade.shared.testing.bus import make_steps

pytestmark = pytest.mark.integration

LINGER_MS = 60_000


async def test_publish_all_does_not_wait_for_the_producers_linger(
    kafka_bootstrap_servers: str, bus_topics: tuple[str, str]
) -> None:
    topic = bus_topics[0]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers, acks="all", linger_ms=LINGER_MS
    )
    await producer.start()
    try:
        records = [(topic, e.key, e.to_bytes(), None) for e in make_steps(200, 20)]
        # A deadline far below the linger: an open batch would wait out the whole minute.
        await asyncio.wait_for(publish_all(producer, records), timeout=LINGER_MS / 1000 / 4)
    finally:
        await producer.stop()
