"""Every topic of the platform, declared once: name, partitions, retention, owner, types.

Topics are never auto-created (the broker refuses): `cascade topics apply` and each
service's start-up create what is missing, idempotently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000
DAY_S = DAY_MS // 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic and what travels on it."""

    name: str
    owner: str  # the service (or external system) that alone produces to it
    partitions: int
    retention_ms: int
    description: str
    cleanup_policy: str = "delete"
    event_types: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    max_message_bytes: int | None = None


CONSUMING_SERVICES = ("accounts", "cases", "notifications", "legal")


def dead_letter_topic(service: str) -> str:
    """Returns the dead-letter topic of a consuming service."""
    return f"{service}.dead-letters.v1"


def replay_topic(service: str) -> str:
    """Returns the topic a service's replayed dead letters go to (only it consumes it)."""
    return f"{service}.replay.v1"


_CORE = (
    TopicSpec(
        name="corebanking.events.v1",
        owner="core-banking",
        partitions=12,
        retention_ms=30 * DAY_MS,
        description="Core banking's account, installment and payment events (fixed contract).",
        event_types=(
            "corebanking.account.opened",
            "corebanking.account.contact-changed",
            "corebanking.installment.due",
            "corebanking.payment.received",
            "corebanking.payment.reversed",
            "corebanking.account.closed",
        ),
        consumers=("accounts",),
    ),
    TopicSpec(
        name="corebanking.business-days.v1",
        owner="core-banking",
        partitions=1,
        retention_ms=365 * DAY_MS,
        description="The business dates core banking closes, in order.",
        event_types=("corebanking.business-day.closed",),
        consumers=("accounts",),
    ),
    TopicSpec(
        name="accounts.delinquency.v1",
        owner="accounts",
        partitions=12,
        retention_ms=30 * DAY_MS,
        description="Delinquency of accounts: days past due, buckets, payments, cures.",
        event_types=(
            "cascade.accounts.delinquency-started.v1",
            "cascade.accounts.delinquency-updated.v1",
            "cascade.accounts.bucket-changed.v1",
            "cascade.accounts.account-cured.v1",
            "cascade.accounts.payment-applied.v1",
            "cascade.accounts.payment-reversed.v1",
            "cascade.accounts.contact-changed.v1",
            "cascade.accounts.pause-started.v1",
            "cascade.accounts.pause-ended.v1",
            "cascade.accounts.account-closed.v1",
        ),
        consumers=("cases",),
    ),
    TopicSpec(
        name="cases.lifecycle.v1",
        owner="cases",
        partitions=12,
        retention_ms=30 * DAY_MS,
        description="Collection cases moving through their stages.",
        consumers=("notifications", "legal"),
    ),
    TopicSpec(
        name="notifications.contacts.v1",
        owner="notifications",
        partitions=12,
        retention_ms=30 * DAY_MS,
        description="Contact attempts with debtors and their outcomes.",
        consumers=("cases", "legal"),
    ),
    TopicSpec(
        name="legal.referrals.v1",
        owner="legal",
        partitions=12,
        retention_ms=30 * DAY_MS,
        description="Legal referrals and litigation milestones.",
        consumers=("cases",),
    ),
)

_PER_SERVICE = tuple(
    spec
    for service in CONSUMING_SERVICES
    for spec in (
        TopicSpec(
            name=dead_letter_topic(service),
            owner=service,
            partitions=1,
            retention_ms=90 * DAY_MS,
            description=f"Events the {service} service could not process, with the reason.",
            # The original record plus provenance headers must fit (clients.py).
            max_message_bytes=2 * 1024 * 1024 + 64 * 1024,
        ),
        TopicSpec(
            name=replay_topic(service),
            owner=service,
            partitions=12,
            retention_ms=7 * DAY_MS,
            description=f"Dead letters re-injected for the {service} service alone.",
            consumers=(service,),
        ),
    )
)

TOPICS: tuple[TopicSpec, ...] = _CORE + _PER_SERVICE


def topic(name: str) -> TopicSpec:
    """Returns the declaration of topic `name`."""
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(f"undeclared topic: {name}")


def consumed_by(service: str) -> tuple[str, ...]:
    """Returns the topics a service consumes, its replay topic included."""
    return tuple(spec.name for spec in TOPICS if service in spec.consumers)


# Kafka deletes a segment only when its newest record is past the retention, and rolls a
# segment at least every segment.ms (set on every topic, admin.new_topic): a record can
# outlive its topic's retention by that much.
SEGMENT_ROLL_MS = 7 * DAY_MS


class UnboundedRetentionError(ValueError):
    """A topic keeps its events for ever: so would the inbox, which no time can say."""


def record_lifetime_ms(
    topic_name: str, retention_ms: int, cleanup_policy: str, segment_ms: int
) -> int:
    """Returns how long a record can stay in a topic with these configs."""
    # Compaction alone keeps a key's last record for ever; with delete, retention bounds it.
    if retention_ms < 0 or "delete" not in cleanup_policy:
        raise UnboundedRetentionError(f"{topic_name} keeps its events for ever")
    return retention_ms + segment_ms


def declared_lifetime_ms(topic_name: str) -> int:
    """Returns how long a record can stay in a declared topic, created as declared."""
    spec = topic(topic_name)
    return record_lifetime_ms(topic_name, spec.retention_ms, spec.cleanup_policy, SEGMENT_ROLL_MS)


def inbox_keep_ms(
    service: str,
    topic_name: str,
    lifetime_ms: Callable[[str], int] = declared_lifetime_ms,
) -> int:
    """Returns how long `service`'s inbox must remember an event id read from `topic_name`.

    As long as the topic can deliver the event again (a redelivery, or an operator's reset
    to the earliest offset), plus as long as a copy of it can come back through a replay:
    a copy dead-lettered as late as the topic keeps the event stays in the dead-letter
    topic for its retention, and a replay of it then in the replay topic for its own.
    `lifetime_ms` says how long a record stays in a topic: as declared, or as the broker
    has it (messaging.topic_drift).
    """
    passages = (topic_name, dead_letter_topic(service), replay_topic(service))
    return sum(lifetime_ms(name) for name in passages)


def inbox_keep_s(service: str) -> dict[str, int]:
    """Returns, for each topic `service` consumes, its inbox_keep_ms in seconds."""
    return {name: inbox_keep_ms(service, name) // 1000 for name in consumed_by(service)}
