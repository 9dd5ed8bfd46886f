"""Whether the declared topics on the broker are as declared, and aligning their configs.

Creating topics never changes one that exists: a topic created before a release, by hand,
or by the system that owns it (core banking's) keeps whatever it was created with. Two
guarantees count on a topic being as declared. Per-key order counts on its partitions
(adding partitions moves keys to other partitions). The inbox's keep counts on its
retention and segment roll (topology.inbox_keep_ms): a topic that keeps records longer can
deliver an event again after the inbox has forgotten it, and it would be applied twice.
So drift is reported, configs can be aligned on demand, and each consumer keeps its inbox
rows as long as the broker, not the declaration, can bring an event back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.admin import topic_configs
from cascade.shared.messaging.topology import (
    SEGMENT_ROLL_MS,
    TOPICS,
    TopicSpec,
    consumed_by,
    dead_letter_topic,
    declared_lifetime_ms,
    inbox_keep_ms,
    record_lifetime_ms,
    replay_topic,
    topic,
)

# The configs the platform's guarantees count on.
WATCHED_CONFIGS = ("retention.ms", "cleanup.policy", "segment.ms")


@dataclass(frozen=True)
class TopicOnBroker:
    """A topic as the broker has it."""

    name: str
    partitions: int
    # The watched configs the broker reported: Apache Kafka reports each (its default if
    # the topic sets none), the embedded broker only those set on the topic.
    configs: Mapping[str, str]

    def lifetime_ms(self, spec: TopicSpec) -> int:
        """How long a record can stay in it; what the broker does not say, as declared."""
        return record_lifetime_ms(
            self.name,
            int(self.configs.get("retention.ms", spec.retention_ms)),
            self.configs.get("cleanup.policy", spec.cleanup_policy),
            int(self.configs.get("segment.ms", SEGMENT_ROLL_MS)),
        )


@asynccontextmanager
async def _admin(bootstrap_servers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def topics_on_broker(
    bootstrap_servers: str, names: Iterable[str]
) -> dict[str, TopicOnBroker]:
    """Returns the topics among `names` that exist, with their watched configs."""
    async with _admin(bootstrap_servers) as admin:
        # Only topics that exist: the embedded broker creates a topic it is asked about.
        existing = set(await admin.list_topics()).intersection(names)
        if not existing:
            return {}
        described = await admin.describe_topics(sorted(existing))
        partitions = {
            found["topic"]: len(found["partitions"])
            for found in described
            if found["error_code"] == 0 and found["partitions"]
        }
        if not partitions:
            return {}
        # All of each topic's configs: the embedded broker drops the connection when asked
        # for some by name.
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in partitions]
        configs = _watched_configs(await admin.describe_configs(resources))
    return {
        name: TopicOnBroker(name, count, configs.get(name, {}))
        for name, count in partitions.items()
    }


def _watched_configs(responses: Sequence[Any]) -> dict[str, dict[str, str]]:
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise RuntimeError(
                    f"could not read the configs of {resource['resource_name']}: "
                    f"error {resource['error_code']} {resource['error_message'] or ''}".strip()
                )
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_names"] in WATCHED_CONFIGS and entry["config_value"] is not None
            }
    return configs


def differences(spec: TopicSpec, found: TopicOnBroker | None) -> list[str]:
    """Returns how a topic on the broker differs from its declaration, in words."""
    if found is None:
        return ["missing on the broker"]
    drift = []
    if found.partitions != spec.partitions:
        drift.append(f"partitions {found.partitions}, declared {spec.partitions}")
    declared = topic_configs(spec, replication_factor=1)
    for name in WATCHED_CONFIGS:
        actual = found.configs.get(name)
        if actual != declared[name]:
            shown = "the broker's default" if actual is None else actual
            drift.append(f"{name} {shown}, declared {declared[name]}")
    return drift


async def topology_drift(
    bootstrap_servers: str, specs: Sequence[TopicSpec] = TOPICS
) -> dict[str, list[str]]:
    """Returns, for each declared topic not as declared, how it differs."""
    found = await topics_on_broker(bootstrap_servers, [spec.name for spec in specs])
    drift = {spec.name: differences(spec, found.get(spec.name)) for spec in specs}
    return {name: words for name, words in drift.items() if words}


async def align_topic_configs(
    bootstrap_servers: str,
    specs: Sequence[TopicSpec],
    *,
    replication_factor: int,
    deadline_s: float = 30.0,
) -> None:
    """Sets the configs of existing topics to their declaration, and waits until the
    broker reports them.

    Kafka's AlterConfigs replaces a topic's whole set of overrides: a config the
    declaration does not state goes back to the broker's default. Partitions are never
    changed here: adding some moves keys, and breaks per-key order.
    """
    wanted = {spec.name: topic_configs(spec, replication_factor) for spec in specs}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, c) for n, c in wanted.items()]
    async with _admin(bootstrap_servers) as admin:
        try:
            responses = await admin.alter_configs(resources)
        except IncompatibleBrokerVersion as error:  # the embedded broker has no AlterConfigs
            raise RuntimeError("this broker cannot alter topic configs") from error
    errors = [
        f"{resource['resource_name']}: error {resource['error_code']}"
        for response in responses
        for resource in response.to_object()["resources"]
        if resource["error_code"] != 0
    ]
    if errors:
        raise RuntimeError(f"could not align topic configs: {'; '.join(errors)}")

    async def reported() -> bool:  # the change reaches the broker's metadata a moment later
        found = await topics_on_broker(bootstrap_servers, wanted)
        return all(
            name in found and found[name].configs.get(config) == configs[config]
            for name, configs in wanted.items()
            for config in WATCHED_CONFIGS
        )

    await wait_until_async(reported, deadline_s, "the aligned topic configs")


async def inbox_keep_s_on_broker(bootstrap_servers: str, service: str) -> dict[str, int]:
    """Returns topology.inbox_keep_s(service), longer wherever the broker keeps a topic's
    records longer than declared; raises ValueError if one keeps them for ever."""
    passages = [*consumed_by(service), dead_letter_topic(service), replay_topic(service)]
    found = await topics_on_broker(bootstrap_servers, passages)

    def lifetime_ms(name: str) -> int:
        declared = declared_lifetime_ms(name)
        on_broker = found.get(name)
        return declared if on_broker is None else max(declared, on_broker.lifetime_ms(topic(name)))

    return {
        name: inbox_keep_ms(service, name, lifetime_ms) // 1000 for name in consumed_by(service)
    }
