"""Publishing many records at once: one record batch per partition instead of one send each.

Partitions are chosen by aiokafka's default partitioner (murmur2 of the key, as Kafka's Java
client does), so a key lands where a plain `send(key=...)` would put it, and the records of
one partition keep their order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


Headers = list[tuple[str, bytes]] | None


async def publish_all(
    producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes, bytes, Headers]]
) -> None:
    """Sends (topic, key, value, headers) records; returns once the broker acked every one."""
    by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, Headers]]] = defaultdict(list)
    partitions: dict[str, list[int]] = {}
    # A batch holds many events per key, and murmur2 is pure Python: hash each key once.
    partition_of: dict[tuple[str, bytes], int] = {}
    for topic, key, value, headers in records:
        partition = partition_of.get((topic, key))
        if partition is None:
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            known = partitions[topic]
            partition = partition_of[(topic, key)] = _partitioner(key, known, known)
        by_partition[(topic, partition)].append((key, value, headers))
    deliveries: list[Any] = []
    for (topic, partition), items in by_partition.items():
        deliveries += await _send_in_batches(producer, topic, partition, items)
    await asyncio.gather(*deliveries)


async def _send_in_batches(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    items: list[tuple[bytes, bytes, Headers]],
) -> list[Any]:
    deliveries = []
    batch = producer.create_batch()
    for key, value, headers in items:
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            # Full: send it (a partition's batches leave in order) and start another.
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record for {topic} is larger than the producer's batch")
    if batch.record_count():
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries
