"""Creating the declared topics, idempotently (`cascade topics apply`, start-up)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.topology import SEGMENT_ROLL_MS, TOPICS, TopicSpec

_TOPIC_ALREADY_EXISTS = 36


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


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[NewTopic], *, deadline_s: float = 30.0
) -> None:
    """Creates the topics that are missing and waits until every partition has a leader."""
    names = [topic.name for topic in topics]
    async with admin_client(bootstrap_servers) as admin:
        errors = _creation_errors(await admin.create_topics(list(topics)))
        if errors:
            raise RuntimeError(f"could not create topics: {'; '.join(errors)}")

        async def have_leaders() -> bool:
            described = await admin.describe_topics(names)
            return len(described) == len(names) and all(
                topic["error_code"] == 0
                and topic["partitions"]
                and all(p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            )

        await wait_until_async(have_leaders, deadline_s, f"leaders for topics {names}")


@asynccontextmanager
async def admin_client(bootstrap_servers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """Yields a started admin client, closed after (also when its start fails half-way)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


def new_topic(spec: TopicSpec, replication_factor: int) -> NewTopic:
    """Returns the admin request for a declared topic."""
    configs = topic_configs(spec, replication_factor)
    return NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=configs)


def topic_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """Returns the configs a declared topic is created with, and aligned to."""
    configs = {
        "retention.ms": str(spec.retention_ms),
        "cleanup.policy": spec.cleanup_policy,
        # Stated, not left to the broker's default: the inbox's keep counts on it.
        "segment.ms": str(SEGMENT_ROLL_MS),
    }
    if replication_factor >= 3:
        # acks=all then means two copies at least (reliability matrix A2).
        configs["min.insync.replicas"] = "2"
    if spec.max_message_bytes is not None:
        configs["max.message.bytes"] = str(spec.max_message_bytes)
    return configs


async def apply_topology(
    bootstrap_servers: str,
    *,
    replication_factor: int = 1,
    specs: Sequence[TopicSpec] = TOPICS,
) -> list[str]:
    """Creates every declared topic that is missing; returns the names it declared."""
    await ensure_topics(bootstrap_servers, [new_topic(s, replication_factor) for s in specs])
    return [spec.name for spec in specs]


async def topic_partitions(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> list[TopicPartition]:
    """Returns every partition of `topics`, in order; raises ValueError for a missing topic."""
    partitions = []
    for described in await admin.describe_topics(list(topics)):
        if described["error_code"] != 0 or not described["partitions"]:
            raise ValueError(f"topic {described['topic']} does not exist")
        numbers = sorted(partition["partition"] for partition in described["partitions"])
        partitions += [TopicPartition(described["topic"], number) for number in numbers]
    return partitions


async def partitions_on_broker(
    bootstrap_servers: str, topics: Sequence[str]
) -> list[TopicPartition]:
    """Returns every partition of `topics`, asking through a short-lived admin client."""
    async with admin_client(bootstrap_servers) as admin:
        return await topic_partitions(admin, topics)
