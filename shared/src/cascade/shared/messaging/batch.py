"""One fetched batch: decoding it, and what the consumer needs to keep about it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from cascade.shared.logging import get_logger
from cascade.shared.messaging.backoff import wait_or_stop
from cascade.shared.messaging.dead_letters import DeadLetter, DeadLetterPublisher
from cascade.shared.messaging.envelope import DecodeError, decode
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry

log = get_logger(__name__)

# While a batch is applied one event at a time or waits to be retried: well inside any
# poll interval.
_POLL_EVERY_S = 1.0

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight reach its database commit before partitions move, then
    hands the applied offsets over, so that the next owner starts after them."""

    def __init__(
        self,
        lock: asyncio.Lock,
        hand_over: Callable[[Collection[Any]], Awaitable[Any]],
        rebalances_total: Counter,
    ) -> None:
        self._lock = lock
        self._hand_over = hand_over
        self._rebalances_total = rebalances_total
        self.rebalances = 0  # that took partitions from this consumer, for its whole life

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:  # the first assignment revokes nothing
            # Counted before waiting for the lock: a batch applied one event at a time
            # then stops at its next event (FetchedBatch.still_ours).
            self.rebalances += 1
            self._rebalances_total.inc()
        # The lock covers decode and database work, not the offset commit, so waiting
        # here cannot deadlock with a commit that needs the coordinator.
        async with self._lock:
            log.info("consumer.partitions_revoked", count=len(revoked))
        await self._hand_over(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("consumer.partitions_assigned", count=len(assigned))


@dataclass
class FetchedBatch:
    """The records of one poll, and what applying them one event at a time must keep."""

    records: list[Record]
    consumer: AIOKafkaConsumer
    membership: FinishBatchOnRevoke
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)
    abandoned: bool = False
    _rebalances: int = field(init=False)
    _polled_at: float = field(init=False, default_factory=time.monotonic)
    _paused: frozenset[Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._rebalances = self.membership.rebalances

    async def still_ours(self) -> bool:
        """Keeps the consumer in its group while the batch is applied one event at a time
        or waits to be retried, and says whether the batch is still this consumer's to
        apply (matrix R6, R14).

        The batch timeout keeps each attempt under max_poll_interval_ms, but a batch's
        events and attempts add up, and aiokafka leaves the group once that long has passed
        without a poll: so it polls, at most once a second. After a rebalance the batch is
        abandoned: aiokafka revokes every partition at each one, and the next holder of a
        partition starts from its committed offset, before this batch, so the rest comes
        again in order and the inbox skips what was applied. Going on instead would race
        the partitions' next holders over the same events (one that both park is
        dead-lettered twice); going on with the partitions still held, skipping the others,
        could commit past events skipped while another member held them.
        """
        if time.monotonic() - self._polled_at >= _POLL_EVERY_S:
            self._stop_fetching()
            await stay_in_group(self.consumer)
            self._polled_at = time.monotonic()
        if self.membership.rebalances != self._rebalances and not self.abandoned:
            self.abandoned = True
            log.info("consumer.batch_abandoned", records=len(self.records))
        return not self.abandoned

    def _stop_fetching(self) -> None:
        # Paused until the batch is done, not only for each poll: resumed, a partition
        # fetches again what the pause dropped (up to max_partition_fetch_bytes), only for
        # the next poll to drop it, every second of a long fallback or outage.
        if self._paused is None:  # those paused by someone else are theirs to resume
            self._paused = frozenset(self.consumer.assignment() - self.consumer.paused())
            self.consumer.pause(*self._paused)

    def done(self) -> None:
        """Lets the partitions paused for the batch's polls fetch again."""
        if self._paused is not None:
            self.consumer.resume(*(self._paused & self.consumer.assignment()))
            self._paused = None

    async def dead_letter(
        self, letters: list[DeadLetter], publisher: DeadLetterPublisher, counted: Counter
    ) -> None:
        """Publishes the batch's dead letters not published yet: a retry of the batch must
        not dead-letter the same record twice."""
        todo = [letter for letter in letters if position(letter.record) not in self.dead_lettered]
        if not todo:
            return
        try:
            await publisher.publish(todo)
        except Exception as error:
            raise DeadLetterFailedError(type(error).__name__) from error
        for letter in todo:
            self.dead_lettered.add(position(letter.record))
            counted.labels(letter.event_type or "unknown", letter.reason).inc()
            log.warning("consumer.dead_lettered", reason=letter.reason, offset=letter.record.offset)

    async def wait_in_group(self, seconds: float, stop: asyncio.Event) -> bool:
        """Waits `seconds`, or less if stopping, polling as `still_ours` does; returns
        whether the batch is still this consumer's to apply."""
        until = time.monotonic() + seconds
        while await self.still_ours() and not stop.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            await wait_or_stop(stop, min(left, _POLL_EVERY_S))
        return not self.abandoned


async def stay_in_group(consumer: AIOKafkaConsumer) -> None:
    """Polls without taking a record, so that the group still counts the consumer as alive.

    Every partition is paused for the poll, so it hands out nothing (it drops what it had
    prefetched, which is fetched again), and those paused before stay paused; should a
    rebalance during it assign partitions, whatever it returns for them is put back.
    """
    held, paused_before = consumer.assignment(), consumer.paused()
    consumer.pause(*held)
    try:
        fetched = await consumer.getmany(timeout_ms=0)
    finally:
        consumer.resume(*((held - paused_before) & consumer.assignment()))
    for tp, records in fetched.items():
        if records:
            consumer.seek(tp, records[0].offset)


def decode_batch(
    records: list[Record], registry: EventRegistry
) -> tuple[list[DecodedEvent], list[DeadLetter]]:
    """Returns the batch's good events and a dead letter for each bad record."""
    events, bad = [], []
    for record in records:
        try:
            events.append(registry.decode(record.value, key=record.key, record=record))
        except DecodeError as error:
            bad.append(_dead_letter(record, error))
    return events, bad


def _dead_letter(record: Record, error: DecodeError) -> DeadLetter:
    try:
        envelope = decode(record.value)  # decoded again: bad records are rare
    except DecodeError:
        envelope = None
    return DeadLetter(
        record=record,
        reason=error.reason,
        error_class=fqcn(error),
        message=str(error),
        attempts=1,
        event_type=envelope.type if envelope else "",
        event_id=envelope.id if envelope else "",
    )


def handler_failed_letter(
    record: Record, event: DecodedEvent, error: Exception, attempts: int
) -> DeadLetter:
    """Returns the dead letter of an event its handler failed on, `attempts` times."""
    return DeadLetter(
        record=record,
        reason="handler_failed",
        error_class=fqcn(error),
        message=str(error),
        attempts=attempts,
        event_type=event.envelope.type,
        event_id=event.envelope.id,
    )


# The order in which a handler applies a batch's events, when it is not the batch's own.
ApplicationOrder = Callable[[Sequence[DecodedEvent]], Sequence[DecodedEvent]]


def batch_order(events: Sequence[DecodedEvent]) -> Sequence[DecodedEvent]:
    return events


def checked_order(
    order: ApplicationOrder, events: Sequence[DecodedEvent]
) -> Sequence[DecodedEvent]:
    """Returns `events` in `order`; as they are if it fails, or drops or adds an event.

    The one-at-a-time fallback isolates a poison event: it must not depend on a handler's
    hook working, nor skip an event whose offset it then commits.
    """
    try:
        ordered = list(order(events))
    except Exception as error:
        log.error("consumer.application_order_failed", error_class=fqcn(error))
        return events
    if sorted(map(id, ordered)) != sorted(map(id, events)):
        log.error("consumer.application_order_not_a_permutation")
        return events
    return ordered


def first_occurrences(events: Sequence[DecodedEvent]) -> list[DecodedEvent]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.envelope.id not in seen:
            seen.add(event.envelope.id)
            unique.append(event)
    return unique


def position(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def fqcn(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


class DeadLetterFailedError(Exception):
    """A dead letter could not be published; the batch must not move on without it."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"dead-letter publish failed: {cause}")
        self.cause = cause
