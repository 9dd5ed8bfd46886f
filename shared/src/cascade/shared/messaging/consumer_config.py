"""How an idempotent consumer runs: its group, topics, batches, attempts and timeouts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cascade.shared.messaging.batch import ApplicationOrder, batch_order


@dataclass(frozen=True)
class ConsumerConfig:
    group_id: str
    topics: tuple[str, ...]
    dead_letter_topic: str
    max_records: int = 500
    max_attempts: int = 5
    # Applied offsets go to Kafka at most this often (and on revocation and stop): fewer
    # coordinator writes, at the price of a longer redelivery after a crash.
    commit_interval_s: float = 1.0
    # An attempt that takes longer is cut: blamed on the events (then applied one at a time)
    # if the database still answers and the attempt was not waiting on another session's
    # lock, else retried. With what may follow a cut, it must stay
    # inside the consumer's max_poll_interval_ms, which the boot-time guard checks
    # (matrix R6, R14, R20; availability.BEYOND_BATCH_TIMEOUT_S).
    batch_timeout_s: float = 60.0
    embedded_broker: bool = False
    service_version: str = "0.1.0"
    # How the handler orders a batch (accounts: account events before the day's close).
    # The one-at-a-time fallback applies the events in this order too, so that an event
    # refused in a batch does not change the order in which the others take effect.
    application_order: ApplicationOrder = batch_order
    # Seconds the inbox remembers an event id, per topic; a topic not listed is remembered
    # for tables.INBOX_KEEP_UNLISTED_S. A service's lifespan fills it from the topology.
    inbox_keep_s: Mapping[str, int] = field(default_factory=dict)
    # Switched off only by the negative-control tests, to prove the tests see the bug.
    dedup: bool = True
    offsets_after_db: bool = True
    # False: every failed attempt counts against the events, as their own failure would
    # (and parks them after max_attempts): no transient retry, no database probe, no lock
    # check.
    retry_unavailable: bool = True
