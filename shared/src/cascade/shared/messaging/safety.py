"""The boot-time guard against unsafe Kafka client settings (reliability matrix R20).

A service checks its clients before starting them and refuses to run with a setting that
would lose or duplicate events: a producer that does not wait for every in-sync replica,
or is not idempotent; a consumer that commits on its own, starts at "latest", or whose
poll interval is shorter than a batch may take.

aiokafka keeps the resolved settings in private attributes (checked against 0.14.0):
`producer._sender._acks` (-1 for "all"), `producer._txn_manager` (set exactly when the
producer is idempotent or transactional), `consumer._enable_auto_commit`,
`consumer._auto_offset_reset`, `consumer._max_poll_interval_ms` and
`consumer._isolation_level`. A missing attribute is reported as a violation, so an
aiokafka upgrade that renames them fails loudly instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

_MISSING = object()


class UnsafeConfigError(RuntimeError):
    """A Kafka client configured in a way that can lose or duplicate events."""

    def __init__(self, client: str, violations: Sequence[str]) -> None:
        super().__init__(f"unsafe {client} configuration: {'; '.join(violations)}")
        self.client = client
        self.violations = tuple(violations)


def producer_violations(producer: AIOKafkaProducer, *, embedded_broker: bool) -> list[str]:
    """Returns every unsafe setting of `producer`; empty when it is safe."""
    violations = []
    sender = getattr(producer, "_sender", None)
    acks = getattr(sender, "_acks", _MISSING)
    if acks != -1:
        shown = "unknown" if acks is _MISSING else acks
        violations.append(f"acks={shown} (must be 'all')")
    txn_manager = getattr(producer, "_txn_manager", _MISSING)
    if txn_manager is _MISSING:
        violations.append("enable_idempotence=unknown (must be True)")
    elif txn_manager is None and not embedded_broker:
        violations.append("enable_idempotence=False (must be True except on the embedded broker)")
    return violations


def is_transactional(producer: AIOKafkaProducer) -> bool:
    """Tells whether `producer` has a transactional id."""
    txn_manager = getattr(producer, "_txn_manager", None)
    return getattr(txn_manager, "transactional_id", None) is not None


def consumer_violations(
    consumer: AIOKafkaConsumer,
    *,
    max_batch_seconds: float,
    transactional_producers: bool = False,
) -> list[str]:
    """Returns every unsafe setting of `consumer`; empty when it is safe.

    `max_batch_seconds` is the longest the consumer may go without polling while it
    applies a fetched batch (matrix R6, R14): the poll interval must exceed it, or the
    group evicts a consumer that is working.
    `transactional_producers` says whether any producer of the consumed topics writes
    in transactions: then only `read_committed` hides aborted records.
    """
    violations = []
    auto_commit = getattr(consumer, "_enable_auto_commit", _MISSING)
    if auto_commit is not False:
        violations.append(f"enable_auto_commit={_show(auto_commit)} (must be False)")
    reset = getattr(consumer, "_auto_offset_reset", _MISSING)
    if reset != "earliest":
        violations.append(f"auto_offset_reset={_show(reset)} (must be 'earliest')")
    interval = getattr(consumer, "_max_poll_interval_ms", _MISSING)
    if not isinstance(interval, int) or interval <= max_batch_seconds * 1000:
        violations.append(
            f"max_poll_interval_ms={_show(interval)} "
            f"(must exceed the max batch time, {max_batch_seconds * 1000:.0f} ms)"
        )
    isolation = getattr(consumer, "_isolation_level", _MISSING)
    if transactional_producers and isolation != "read_committed":
        violations.append(
            f"isolation_level={_show(isolation)} "
            "(must be 'read_committed' when a producer is transactional)"
        )
    return violations


def verify_producer(producer: AIOKafkaProducer, *, embedded_broker: bool) -> None:
    """Raises UnsafeConfigError listing every unsafe setting of `producer`."""
    violations = producer_violations(producer, embedded_broker=embedded_broker)
    if violations:
        raise UnsafeConfigError("producer", violations)


def verify_consumer(
    consumer: AIOKafkaConsumer,
    *,
    max_batch_seconds: float,
    transactional_producers: bool = False,
) -> None:
    """Raises UnsafeConfigError listing every unsafe setting of `consumer`."""
    violations = consumer_violations(
        consumer,
        max_batch_seconds=max_batch_seconds,
        transactional_producers=transactional_producers,
    )
    if violations:
        raise UnsafeConfigError("consumer", violations)


def _show(value: object) -> str:
    return "unknown" if value is _MISSING else repr(value)
