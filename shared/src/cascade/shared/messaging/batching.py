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
from aiokafka.producer.message_accumulator import BatchBuilder

_partitioner = DefaultPartitioner()


Headers = list[tuple[str, bytes]] | None


class PartitionCache:
    """The partition of each (topic, key), as aiokafka's default partitioner picks it.

    murmur2 is pure Python and a relay sees the same keys batch after batch: each key is
    hashed once per partition count, not once per record. Bounded: cleared when full.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._partitions: dict[tuple[str, bytes, int], int] = {}

    def partition(self, topic: str, key: bytes, known: list[int]) -> int:
        """Returns the partition of `key` among the topic's `known` partitions."""
        cache_key = (topic, key, len(known))
        partition = self._partitions.get(cache_key)
        if partition is None:
            if len(self._partitions) >= self._max_keys:
                self._partitions.clear()
            partition = self._partitions[cache_key] = _partitioner(key, known, known)
        return partition


async def publish_all(
    producer: AIOKafkaProducer,
    records: Sequence[tuple[str, bytes, bytes, Headers]],
    partitions: PartitionCache | None = None,
) -> None:
    """Sends (topic, key, value, headers) records; returns once the broker acked every one."""
    cache = partitions or PartitionCache()
    by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, Headers]]] = defaultdict(list)
    known: dict[str, list[int]] = {}
    for topic, key, value, headers in records:
        if topic not in known:
            known[topic] = sorted(await producer.partitions_for(topic))
        partition = cache.partition(topic, key, known[topic])
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
            deliveries.append(await _send(producer, batch, topic, partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record for {topic} is larger than the producer's batch")
    if batch.record_count():
        deliveries.append(await _send(producer, batch, topic, partition))
    return deliveries


async def _send(producer: AIOKafkaProducer, batch: BatchBuilder, topic: str, partition: int) -> Any:
    # Closed, the batch is complete: the producer sends it at once instead of lingering
    # (linger_ms) for records that only producer.send() could still add.
    batch.close()
    return await producer.send_batch(batch, topic, partition=partition)
