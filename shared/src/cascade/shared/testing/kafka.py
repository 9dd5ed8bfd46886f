"""Kafka helpers for tests: declare topics (auto-create is off), produce, consume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cascade.shared.infra.processes import wait_until_async

_TOPIC_ALREADY_EXISTS = 36


def unique_name(prefix: str) -> str:
    """Return `prefix` with a random suffix, for topics and groups private to one test."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _creation_errors(response: Any) -> list[str]:
    # The response shape depends on the negotiated CreateTopics version.
    body = response.to_object()
    entries = body.get("topics") or body.get("topic_errors") or []
    errors = []
    for entry in entries:
        code = entry.get("error_code", 0)
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            name = entry.get("name") or entry.get("topic")
            errors.append(f"{name}: error {code} {entry.get('error_message') or ''}".strip())
    return errors


async def create_topics(
    bootstrap_servers: str,
    names: Sequence[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,  # noqa: ASYNC109 - a polling deadline
) -> None:
    """Create topics (existing ones are kept) and wait until every partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        new = [NewTopic(name, partitions, replication_factor) for name in names]
        errors = _creation_errors(await admin.create_topics(new))
        if errors:
            raise RuntimeError(f"could not create topics: {'; '.join(errors)}")

        async def have_leaders() -> bool:
            described = await admin.describe_topics(list(names))
            return len(described) == len(names) and all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            )

        await wait_until_async(have_leaders, timeout, f"leaders for topics {list(names)}")
    finally:
        await admin.close()


async def list_topics(bootstrap_servers: str) -> list[str]:
    """Return the names of the topics the cluster has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


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
