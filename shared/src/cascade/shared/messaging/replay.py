"""The dead-letter tool: list a service's dead letters and replay them (matrix R10).

Reading takes a plain consumer (no group, nothing committed) from the beginning of the
dead-letter topic to the end offsets it had when the read began. Replaying re-produces a
dead letter's ORIGINAL key and value, so the event keeps its id, to the service's replay
topic, which only that service consumes; its inbox makes a second replay a no-op.

A record's value may hold personal data: callers print it only when asked to.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from cascade.shared.logging import mask_text
from cascade.shared.messaging.admin import partitions_on_broker
from cascade.shared.messaging.clients import make_producer
from cascade.shared.messaging.safety import verify_producer
from cascade.shared.messaging.topology import dead_letter_topic as default_dead_letter_topic
from cascade.shared.messaging.topology import replay_topic as default_replay_topic
from cascade.shared.settings import KafkaSettings

REPLAYED_FROM_HEADER = "dlt-replayed-from-offset"
_READ_DEADLINE_S = 60.0


@dataclass(frozen=True)
class DeadLetterRecord:
    """One record of a dead-letter topic."""

    partition: int
    offset: int
    timestamp: int  # ms since the epoch, when the dead letter was written
    key: bytes | None
    headers: dict[str, str]
    value_size: int
    value: bytes | None

    def header(self, name: str) -> str:
        """Returns a header's value, or "" when the record does not carry it."""
        return self.headers.get(name, "")


async def read_dead_letters(
    bootstrap: str,
    service: str,
    *,
    limit: int | None = None,
    dead_letter_topic: str | None = None,
) -> list[DeadLetterRecord]:
    """Returns the dead letters of `service` (at most `limit`), oldest first."""
    topic = dead_letter_topic or default_dead_letter_topic(service)
    partitions = await partitions_on_broker(bootstrap, [topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=f"cascade-dlq-{service}",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        records = await _read_until(consumer, ends, limit)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records if limit is None else records[:limit]


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], limit: int | None
) -> list[DeadLetterRecord]:
    records: list[DeadLetterRecord] = []
    pending = {tp for tp, end in ends.items() if end > 0}
    deadline = time.monotonic() + _READ_DEADLINE_S
    while pending and (limit is None or len(records) < limit):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"read {len(records)} dead letters, then the broker stalled")
        fetched = await consumer.getmany(*pending, timeout_ms=500)
        for tp, batch in fetched.items():
            records.extend(_record(r) for r in batch if r.offset < ends[tp])
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return records


def _record(record: ConsumerRecord[bytes, bytes]) -> DeadLetterRecord:
    value = record.value
    return DeadLetterRecord(
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp,
        key=record.key,
        headers={
            name: (raw or b"").decode("utf-8", "replace") for name, raw in record.headers or ()
        },
        value_size=len(value) if value is not None else 0,
        value=value,
    )


async def replay_dead_letters(
    bootstrap: str,
    service: str,
    *,
    offsets: Collection[int] | None = None,
    dead_letter_topic: str | None = None,
    replay_topic: str | None = None,
    enable_idempotence: bool = True,
) -> int:
    """Re-produces the chosen dead letters (all by default) to the replay topic.

    Each keeps its original key and value and gains a `dlt-replayed-from-offset` header.
    Raises ValueError, before producing anything, if a chosen offset is not a dead letter.
    Returns how many were replayed, after the broker acknowledged every one (acks=all).
    """
    letters = await read_dead_letters(bootstrap, service, dead_letter_topic=dead_letter_topic)
    if offsets is not None:
        wanted = set(offsets)
        missing = wanted - {letter.offset for letter in letters}
        if missing:
            raise ValueError(f"no dead letter at offset(s) {sorted(missing)}")
        letters = [letter for letter in letters if letter.offset in wanted]
    target = replay_topic or default_replay_topic(service)
    settings = KafkaSettings(bootstrap_servers=bootstrap, enable_idempotence=enable_idempotence)
    producer = make_producer(settings, client_id=f"cascade-dlq-replay-{service}")
    try:
        verify_producer(producer, embedded_broker=not enable_idempotence)
        await producer.start()
        deliveries = [
            await producer.send(
                target,
                letter.value,
                key=letter.key,
                headers=[(REPLAYED_FROM_HEADER, str(letter.offset).encode())],
            )
            for letter in letters
        ]
        for delivery in deliveries:
            await delivery  # raises if the broker did not acknowledge it
    finally:
        await producer.stop()
    return len(letters)


_SUMMARY_FIELDS = (
    ("reason", "dlt-reason"),
    ("type", "dlt-event-type"),
    ("id", "dlt-event-id"),
    ("exception", "dlt-exception-fqcn"),
)


def summary_line(letter: DeadLetterRecord) -> str:
    """Returns one line about a dead letter, for `cascade dlq list`: never its value."""
    origin = (
        f"{letter.header('dlt-original-topic') or '-'}/"
        f"{letter.header('dlt-original-partition') or '-'}@"
        f"{letter.header('dlt-original-offset') or '-'}"
    )
    fields = " ".join(f"{label}={_safe(letter.header(name))}" for label, name in _SUMMARY_FIELDS)
    return f"offset={letter.offset} time={_time(letter.timestamp)} {fields} original={origin}"


def detail_lines(letter: DeadLetterRecord, *, show_value: bool = False) -> list[str]:
    """Returns a dead letter's headers and value size; its value only if `show_value`."""
    lines = [
        f"partition: {letter.partition}",
        f"offset: {letter.offset}",
        f"time: {_time(letter.timestamp)}",
        *(f"{name}: {_safe(value)}" for name, value in sorted(letter.headers.items())),
        f"value-size: {letter.value_size} bytes",
    ]
    if show_value:
        # Asked for explicitly: the value may hold personal data and is printed as it is.
        value = letter.value or b""
        lines.append(f"value: {value.decode('utf-8', 'backslashreplace')}")
    return lines


def _safe(text: str) -> str:
    # Headers are sanitized when written; masking again guards against any other writer.
    return mask_text(text) or "-"


def _time(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
