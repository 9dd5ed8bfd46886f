"""Whether the declared topics on the broker are as declared, and aligning their configs.

Creating topics never changes one that exists: a topic created before a release, by hand,
or by the system that owns it (core banking's) keeps whatever it was created with. Three
guarantees count on a topic being as declared. Per-key order counts on its partitions
(adding partitions moves keys to other partitions). Durability counts on its replicas and
`min.insync.replicas`. The inbox's keep counts on its retention and segment roll
(topology.inbox_keep_ms): a topic that keeps records longer can deliver an event again
after the inbox has forgotten it, and it would be applied twice. So drift is reported,
configs can be aligned on demand, and each consumer keeps its inbox rows as long as the
broker, not the declaration, can bring an event back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, for_code

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.admin import admin_client, topic_configs
from cascade.shared.messaging.topology import (
    SEGMENT_ROLL_MS,
    TOPICS,
    TopicSpec,
    UnboundedRetentionError,
    consumed_by,
    dead_letter_topic,
    declared_lifetime_ms,
    inbox_keep_ms,
    record_lifetime_ms,
    replay_topic,
    topic,
)

# The configs the platform's guarantees count on, and aligns: the inbox's keep, a dead
# letter's size (clients.DEAD_LETTER_MAX_BYTES), and acks=all meaning two copies.
WATCHED_CONFIGS = ("retention.ms", "cleanup.policy", "segment.ms")
ALIGNED_CONFIGS = (*WATCHED_CONFIGS, "max.message.bytes", "min.insync.replicas")
# Kafka's DescribeConfigs source of a config set on the topic itself.
_SET_ON_TOPIC = 1


@dataclass(frozen=True)
class TopicOnBroker:
    """A topic as the broker has it."""

    name: str
    partitions: int
    replicas: int  # of its least replicated partition
    # Its configs as the broker reported them: Apache Kafka reports each (its default when
    # the topic sets none), the embedded broker only those set on the topic.
    configs: Mapping[str, str]
    # The configs set on the topic itself, kept when configs are aligned; None if the
    # broker cannot say which they are (then the topic is not aligned).
    overrides: Mapping[str, str] | None

    def lifetime_ms(self, spec: TopicSpec) -> int:
        """How long a record can stay in it; what the broker does not say, as declared."""
        return record_lifetime_ms(
            self.name,
            int(self.configs.get("retention.ms", spec.retention_ms)),
            self.configs.get("cleanup.policy", spec.cleanup_policy),
            int(self.configs.get("segment.ms", SEGMENT_ROLL_MS)),
        )


async def topics_on_broker(
    bootstrap_servers: str, names: Iterable[str]
) -> dict[str, TopicOnBroker]:
    """Returns the topics among `names` that exist, with their configs."""
    async with admin_client(bootstrap_servers) as admin:
        # Only topics that exist: the embedded broker creates a topic it is asked about.
        existing = set(await admin.list_topics()).intersection(names)
        if not existing:
            return {}
        described = [
            found
            for found in await admin.describe_topics(sorted(existing))
            if found["error_code"] == 0 and found["partitions"]
        ]
        # All of each topic's configs: the embedded broker drops the connection when asked
        # for some by name.
        resources = [ConfigResource(ConfigResourceType.TOPIC, f["topic"]) for f in described]
        entries = _config_entries(await admin.describe_configs(resources)) if resources else {}
    return {
        found["topic"]: TopicOnBroker(
            found["topic"],
            len(found["partitions"]),
            min(len(partition["replicas"]) for partition in found["partitions"]),
            {
                e["config_names"]: e["config_value"]
                for e in entries[found["topic"]]
                if e["config_value"] is not None
            },
            _own_configs(entries[found["topic"]]),
        )
        for found in described
    }


def _config_entries(responses: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
    entries: dict[str, list[dict[str, Any]]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                # As Kafka's own error, so that a retriable one is retried (errors.is_transient).
                raise for_code(resource["error_code"])(
                    f"the configs of {resource['resource_name']}: {resource['error_message']}"
                )
            entries[resource["resource_name"]] = resource["config_entries"]
    return entries


def _own_configs(entries: Sequence[dict[str, Any]]) -> dict[str, str] | None:
    """The configs set on the topic itself, or None where the broker does not say which
    they are (no source: DescribeConfigs v0) or hides a value (a sensitive one)."""
    own = {}
    for entry in entries:
        if "config_source" not in entry:
            return None
        if entry["config_source"] == _SET_ON_TOPIC:
            if entry["config_value"] is None:
                return None
            own[entry["config_names"]] = entry["config_value"]
    return own


def differences(
    spec: TopicSpec, found: TopicOnBroker | None, replication_factor: int = 1
) -> list[str]:
    """Returns how a topic on the broker differs from its declaration, in words;
    `replication_factor` is the one the platform creates topics with."""
    if found is None:
        return ["missing on the broker"]
    drift = []
    if found.partitions != spec.partitions:
        drift.append(f"partitions {found.partitions}, declared {spec.partitions}")
    if found.replicas < replication_factor:
        drift.append(f"replicas {found.replicas}, declared {replication_factor}")
    declared = declared_configs(spec, replication_factor)
    for name, wanted in declared.items():
        actual = found.configs.get(name)
        if actual != wanted:
            shown = "the broker's default" if actual is None else actual
            drift.append(f"{name} {shown}, declared {wanted}")
    return drift


def declared_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """Returns the configs drift is measured on, and alignment sets."""
    configs = topic_configs(spec, replication_factor)
    return {name: configs[name] for name in ALIGNED_CONFIGS if name in configs}


async def topology_drift(
    bootstrap_servers: str, specs: Sequence[TopicSpec] = TOPICS, replication_factor: int = 1
) -> dict[str, list[str]]:
    """Returns, for each declared topic not as declared, how it differs."""
    found = await topics_on_broker(bootstrap_servers, [spec.name for spec in specs])
    drift = {s.name: differences(s, found.get(s.name), replication_factor) for s in specs}
    return {name: words for name, words in drift.items() if words}


async def align_topic_configs(
    bootstrap_servers: str,
    specs: Sequence[TopicSpec],
    *,
    replication_factor: int,
    deadline_s: float = 30.0,
) -> list[str]:
    """Sets the drifted configs of existing topics to their declaration, keeping every
    other config set on them; returns the names of the topics it changed, once the broker
    reports the change. Partitions and replicas are never changed here: adding partitions
    moves keys, which breaks per-key order.
    """
    found = await topics_on_broker(bootstrap_servers, [spec.name for spec in specs])
    declared = {s.name: declared_configs(s, replication_factor) for s in specs if s.name in found}
    wanted = {
        name: configs
        for name, configs in declared.items()
        if any(found[name].configs.get(key) != value for key, value in configs.items())
    }
    if not wanted:
        return []
    # AlterConfigs replaces the whole set of a topic's own configs (aiokafka has no
    # IncrementalAlterConfigs): send the ones it has, with the declared ones over them.
    # Another change made between the read and the write is lost.
    unknown = [name for name in wanted if found[name].overrides is None]
    if unknown:
        raise RuntimeError(f"the broker does not say which configs are set on {unknown}")
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {**(found[name].overrides or {}), **configs})
        for name, configs in wanted.items()
    ]
    await _alter(bootstrap_servers, resources)

    async def reported() -> bool:  # the change reaches the broker's metadata a moment later
        now = await topics_on_broker(bootstrap_servers, wanted)
        return all(
            name in now and now[name].configs.get(key) == value
            for name, configs in wanted.items()
            for key, value in configs.items()
        )

    await wait_until_async(reported, deadline_s, "the aligned topic configs")
    return list(wanted)


async def _alter(bootstrap_servers: str, resources: list[ConfigResource]) -> None:
    async with admin_client(bootstrap_servers) as admin:
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


async def inbox_keep_s_on_broker(
    bootstrap_servers: str, service: str
) -> tuple[dict[str, int | None], list[str]]:
    """Returns, for each topic `service` consumes, how long its inbox must remember an id
    as the broker keeps the topics (never shorter than declared; None where a topic on
    the way keeps events for ever); and the topics on the way the broker did not show,
    which count as declared."""
    passages = [*consumed_by(service), dead_letter_topic(service), replay_topic(service)]
    found = await topics_on_broker(bootstrap_servers, passages)

    def lifetime_ms(name: str) -> int:
        declared = declared_lifetime_ms(name)
        on_broker = found.get(name)
        return declared if on_broker is None else max(declared, on_broker.lifetime_ms(topic(name)))

    keeps: dict[str, int | None] = {}
    for name in consumed_by(service):
        try:
            keeps[name] = inbox_keep_ms(service, name, lifetime_ms) // 1000
        except UnboundedRetentionError:
            keeps[name] = None
    return keeps, [name for name in passages if name not in found]
