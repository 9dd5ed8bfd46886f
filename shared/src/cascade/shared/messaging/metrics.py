"""Prometheus metrics of the event backbone (issue: metrics of the bus)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def count_by_type(counter: Counter, event_types: Iterable[str]) -> None:
    """Adds a batch of events to a per-type counter: one label lookup per type, not per event."""
    for event_type, count in collections.Counter(event_types).items():
        counter.labels(event_type).inc(count)


class BusMetrics:
    """Events consumed, published and dead-lettered; handler latency; backlog and lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.consumed = Counter(
            "cascade_events_consumed", "Events applied by a handler", ["type"], registry=registry
        )
        self.duplicates = Counter(
            "cascade_events_duplicate",
            "Events skipped because the inbox had already recorded them",
            ["type"],
            registry=registry,
        )
        self.published = Counter(
            "cascade_events_published",
            "Outbox events acknowledged by the broker",
            ["type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "cascade_events_dead_lettered",
            "Events sent to the dead-letter topic",
            ["type", "reason"],
            registry=registry,
        )
        self.rebalances = Counter(
            "cascade_consumer_rebalances",
            "Rebalances that took this replica's partitions (aiokafka revokes all of them at"
            " each). Deploys and scaling cause some; a steady rate while the membership is"
            " stable means members are evicted, e.g. for polling less often than"
            " max_poll_interval_ms",
            registry=registry,
        )
        self.blocked_attempts = Counter(
            "cascade_consumer_blocked_attempts",
            "Attempts cut by the batch timeout while waiting on a lock another session holds,"
            " retried without counting against the events, for as long as it is held: a"
            " steady rate is a stalled partition (a migration, a session left in a"
            " transaction)",
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "cascade_handler_seconds",
            "Time to apply one fetched batch, database commit included",
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "cascade_outbox_backlog", "Outbox rows not yet published", registry=registry
        )
        self.outbox_oldest_age = Gauge(
            "cascade_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row",
            registry=registry,
        )
        self.inbox_swept = Counter(
            "cascade_inbox_swept_rows",
            "Inbox rows deleted by the sweep, past the time their event could come back",
            registry=registry,
        )
        self.inbox_sweep_finished = Gauge(
            "cascade_inbox_sweep_finished_timestamp_seconds",
            "When the inbox sweep last finished a pass over the whole table",
            registry=registry,
        )
        self.inbox_bytes = Gauge(
            "cascade_inbox_bytes",
            "Disk used by the inbox table and its index (levels off once swept space is reused)",
            registry=registry,
        )
        self.inbox_rows = Gauge(
            "cascade_inbox_rows_estimate",
            "Rows in the inbox, as PostgreSQL's statistics estimate them",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "cascade_consumer_lag",
            "Records behind the partition's high watermark",
            ["topic", "partition"],
            registry=registry,
        )


def counter_total(counter: Counter) -> float:
    """Returns a counter's value summed over its labels."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
