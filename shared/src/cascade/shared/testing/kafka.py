"""Kafka helpers for tests: declare topics (auto-create is off), produce, consume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.structs import TopicPartition

from cascade.shared.messaging.admin import (
    admin_client,
    ensure_topics,
    partitions_on_broker,
    topic_partitions,
)
from cascade.shared.messaging.envelope import decode


def unique_name(prefix: str) -> str:
    """Return `prefix` with a random suffix, for topics and groups private to one test."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_topics(
    bootstrap_servers: str,
    names: Sequence[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
) -> None:
    """Create topics (existing ones are kept) and wait until every partition has a leader."""
    topics = [NewTopic(name, partitions, replication_factor) for name in names]
    await ensure_topics(bootstrap_servers, topics)


async def list_topics(bootstrap_servers: str) -> list[str]:
    """Return the names of the topics the cluster has."""
    async with admin_client(bootstrap_servers) as admin:
        topics: list[str] = await admin.list_topics()
        return topics


async def produce(
    bootstrap_servers: str,
    topic: str,
    values: Sequence[bytes],
    *,
    enable_idempotence: bool = True,
) -> list[bytes]:
    """Send `values` with acks=all and return those the broker acknowledged, in order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=enable_idempotence,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value) for value in values]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    return [v for v, o in zip(values, outcomes, strict=True) if not isinstance(o, BaseException)]


async def consume(
    bootstrap_servers: str,
    topic: str,
    count: int,
    *,
    group_id: str | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline for the whole read
) -> list[bytes]:
    """Read `count` values from the start of `topic` in a consumer group, then commit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id or unique_name("test-group"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    values.extend(record.value for record in records)
        await consumer.commit()
    except TimeoutError as error:
        raise TimeoutError(f"read {len(values)} of {count} records from {topic}") from error
    finally:
        await consumer.stop()
    return values


async def record_count(bootstrap_servers: str, topics: Sequence[str]) -> int:
    """Return how many records `topics` hold now."""
    async with _admin_and_probe(bootstrap_servers) as (admin, probe):
        partitions = await topic_partitions(admin, topics)
        ends = await probe.end_offsets(partitions)
        starts = await probe.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)


async def end_offsets(bootstrap_servers: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Return the offset after the last record of every partition of `topics`, now."""
    async with _admin_and_probe(bootstrap_servers) as (admin, probe):
        ends: dict[TopicPartition, int] = await probe.end_offsets(
            await topic_partitions(admin, topics)
        )
        return ends


async def group_lag(
    bootstrap_servers: str,
    group_id: str,
    topics: Sequence[str],
    ends: Mapping[TopicPartition, int] | None = None,
) -> int:
    """Return how many records of `topics` the group has not committed yet: up to their
    end now, or up to `ends` (taken earlier, with `end_offsets`) when given."""
    async with _admin_and_probe(bootstrap_servers) as (admin, probe):
        try:
            committed = await admin.list_consumer_group_offsets(group_id)
        except GroupCoordinatorNotAvailableError:
            return -1  # the group's coordinator is still loading: not caught up yet
        partitions = await topic_partitions(admin, topics)
        if not partitions:
            raise RuntimeError(f"no partitions known for {list(topics)}")
        if ends is None:
            ends = await probe.end_offsets(partitions)
        lag = 0
        for tp, end in ends.items():
            done = committed.get(tp)
            lag += max(end - (done.offset if done is not None and done.offset >= 0 else 0), 0)
        return lag


async def committed_offsets(bootstrap_servers: str, group_id: str) -> dict[TopicPartition, int]:
    """Return the group's committed offsets, as the broker has them."""
    async with admin_client(bootstrap_servers) as admin:
        offsets = await admin.list_consumer_group_offsets(group_id)
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def event_ids_by_partition(
    bootstrap_servers: str, topic: str, count: int
) -> dict[TopicPartition, list[str]]:
    """Return the event ids of each partition of `topic` in offset order, once `count`
    records are read (without a group)."""
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest"
    )
    await reader.start()
    ids: dict[TopicPartition, list[str]] = {}
    try:
        async with asyncio.timeout(120):
            while sum(map(len, ids.values())) < count:
                for tp, records in (await reader.getmany(timeout_ms=500)).items():
                    ids.setdefault(tp, []).extend(decode(r.value).id for r in records)
    finally:
        await reader.stop()
    return ids


@asynccontextmanager
async def _admin_and_probe(
    bootstrap_servers: str,
) -> AsyncIterator[tuple[AIOKafkaAdminClient, AIOKafkaConsumer]]:
    """An admin client and a group-less consumer that reads offsets, both started."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    async with admin_client(bootstrap_servers) as admin:
        await probe.start()
        try:
            yield admin, probe
        finally:
            await probe.stop()


async def rewind_group(bootstrap_servers: str, group_id: str, topics: Sequence[str]) -> None:
    """Commit offset 0 on every partition of `topics` for an idle group: a full replay."""
    partitions = await partitions_on_broker(bootstrap_servers, topics)
    # A consumer with manual assignment commits for the group without joining it.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()
