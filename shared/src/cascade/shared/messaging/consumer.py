"""The idempotent consumer: at-least-once delivery, exactly-once effects.

Per fetched batch: decode; dead-letter the bad records (acknowledged first); then in one
database transaction record every event id in the inbox and apply the handler's effects
for the new ones; only after the database commit, commit the offsets. A crash anywhere
means redelivery, and redelivery is a no-op thanks to the inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import bind_context, get_logger
from cascade.shared.messaging import inbox
from cascade.shared.messaging.backoff import Backoff
from cascade.shared.messaging.dead_letters import DeadLetter, DeadLetterPublisher
from cascade.shared.messaging.envelope import DecodeError, decode
from cascade.shared.messaging.errors import is_transient
from cascade.shared.messaging.faults import crash_point
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.offsets import commit_offsets, record_lag
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry

log = get_logger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[AsyncSession, Sequence[DecodedEvent]], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerConfig:
    group_id: str
    topics: tuple[str, ...]
    dead_letter_topic: str
    max_records: int = 500
    max_attempts: int = 5
    # The batch must finish well inside max_poll_interval_ms (matrix R6): bounded batches.
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # Switched off only by the negative-control tests, to prove the tests see the bug.
    dedup: bool = True
    offsets_after_db: bool = True


@dataclass
class _Batch:
    records: list[Record]
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight reach its database commit before partitions move."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The lock covers decode and database work, not the offset commit, so waiting
        # here cannot deadlock with a commit that needs the coordinator.
        async with self._lock:
            log.info("consumer.partitions_revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("consumer.partitions_assigned", count=len(assigned))


class EventConsumer:
    """Consumes a service's topics into its handler, through its inbox."""

    def __init__(
        self,
        config: ConsumerConfig,
        *,
        consumer_factory: Callable[[], AIOKafkaConsumer],
        producer_factory: Callable[[], AIOKafkaProducer],
        sessions: async_sessionmaker[AsyncSession],
        inbox_table: Table,
        registry: EventRegistry,
        handler: BatchHandler,
        metrics: BusMetrics,
    ) -> None:
        self._config = config
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._sessions = sessions
        self._inbox = inbox_table
        self._registry = registry
        self._handler = handler
        self._metrics = metrics
        self._lock = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set; reconnects after broker or database outages."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                async with self._clients() as (consumer, dead_letters):
                    await self._consume(consumer, dead_letters, stop)
            except Exception as error:
                log.warning("consumer.restarting", error_class=type(error).__name__)
                await backoff.wait(stop)

    @asynccontextmanager
    async def _clients(self) -> AsyncIterator[tuple[AIOKafkaConsumer, DeadLetterPublisher]]:
        consumer, producer = self._consumer_factory(), self._producer_factory()
        try:
            await producer.start()
            consumer.subscribe(list(self._config.topics), listener=_FinishBatchOnRevoke(self._lock))
            await consumer.start()
            cfg = self._config
            yield consumer, DeadLetterPublisher(producer, cfg.dead_letter_topic, cfg.group_id)
        finally:
            # stop() leaves the group at once, so the partitions move without a timeout.
            await consumer.stop()
            await producer.stop()

    async def _consume(
        self, consumer: AIOKafkaConsumer, dead_letters: DeadLetterPublisher, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=self._config.max_records)
            if not fetched:
                continue
            crash_point("after_poll")
            if not self._config.offsets_after_db:  # the broken order, for R3's control only
                await commit_offsets(consumer, fetched)
            batch = _Batch([r for tp in sorted(fetched) for r in fetched[tp]])
            if not await self._apply_until_done(batch, dead_letters, stop):
                return  # stopping: leave the offsets, the batch will be redelivered
            crash_point("after_db_commit_before_offset_commit")
            if self._config.offsets_after_db:
                await commit_offsets(consumer, fetched)
            crash_point("after_offset_commit")
            record_lag(consumer, fetched, self._metrics)

    async def _apply_until_done(
        self, batch: _Batch, dead_letters: DeadLetterPublisher, stop: asyncio.Event
    ) -> bool:
        """Applies a batch, retrying transient failures for as long as it takes."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self._apply(batch, dead_letters)
                return True
            except Exception as error:
                if not is_transient(error):
                    await self._apply_one_by_one(batch, dead_letters, stop)
                    return True
                log.warning("consumer.transient_failure", error_class=type(error).__name__)
                await backoff.wait(stop)
        return False

    async def _apply(self, batch: _Batch, dead_letters: DeadLetterPublisher) -> None:
        async with self._lock:
            started = time.perf_counter()
            events, bad = self._decode(batch.records)
            await self._dead_letter(batch, bad, dead_letters)
            await self._transaction(events)
            self._metrics.handler_seconds.observe(time.perf_counter() - started)

    async def _transaction(self, events: Sequence[DecodedEvent]) -> None:
        async with self._sessions() as session, session.begin():
            fresh = _first_occurrences(events)
            if self._config.dedup:
                new_ids = await inbox.claim_new(
                    session, self._inbox, self._config.group_id, [e.envelope.id for e in fresh]
                )
                for event in fresh:
                    if event.envelope.id not in new_ids:
                        self._metrics.duplicates.labels(event.envelope.type).inc()
                fresh = [e for e in fresh if e.envelope.id in new_ids]
            await self._handler(session, fresh)
            crash_point("in_handler_before_db_commit")
        for event in fresh:
            self._metrics.consumed.labels(event.envelope.type).inc()

    def _decode(self, records: list[Record]) -> tuple[list[DecodedEvent], list[DeadLetter]]:
        events, bad = [], []
        for record in records:
            try:
                envelope = decode(record.value)
                events.append(self._registry.validate(envelope, key=record.key))
            except DecodeError as error:
                bad.append(DeadLetter(record, error.reason, "DecodeError", str(error), 1))
        return events, bad

    async def _dead_letter(
        self, batch: _Batch, letters: list[DeadLetter], publisher: DeadLetterPublisher
    ) -> None:
        # A transient retry of the batch must not dead-letter the same record twice.
        todo = [letter for letter in letters if _position(letter.record) not in batch.dead_lettered]
        if not todo:
            return
        await publisher.publish(todo)
        for letter in todo:
            batch.dead_lettered.add(_position(letter.record))
            self._metrics.dead_lettered.labels(letter.event_type or "unknown", letter.reason).inc()
            log.warning("consumer.dead_lettered", reason=letter.reason, offset=letter.record.offset)

    async def _apply_one_by_one(
        self, batch: _Batch, dead_letters: DeadLetterPublisher, stop: asyncio.Event
    ) -> None:
        """Isolates the failing event: each on its own, dead-lettered after N attempts."""
        async with self._lock:
            events, _ = self._decode(batch.records)
        by_id = {e.envelope.id: e for e in events}
        for record in batch.records:
            event = by_id.get(_event_id(record))
            if event is None or _position(record) in batch.dead_lettered:
                continue
            await self._apply_single(batch, record, event, dead_letters, stop)

    async def _apply_single(
        self,
        batch: _Batch,
        record: Record,
        event: DecodedEvent,
        dead_letters: DeadLetterPublisher,
        stop: asyncio.Event,
    ) -> None:
        backoff = Backoff()
        bind_context(event_id=event.envelope.id, correlation_id=event.envelope.correlationid)
        for attempt in range(1, self._config.max_attempts + 1):
            try:
                async with self._lock:
                    await self._transaction([event])
                return
            except Exception as error:
                if is_transient(error):
                    raise  # not the event's fault: the consumer restarts and retries
                if attempt < self._config.max_attempts:
                    log.warning("consumer.handler_failed", attempt=attempt, error=_fqcn(error))
                    await backoff.wait(stop)
                    continue
                letter = DeadLetter(
                    record=record,
                    reason="handler_failed",
                    error_class=_fqcn(error),
                    message=str(error),
                    attempts=attempt,
                    event_type=event.envelope.type,
                    event_id=event.envelope.id,
                )
                async with self._lock:
                    await self._dead_letter(batch, [letter], dead_letters)


def _first_occurrences(events: Sequence[DecodedEvent]) -> list[DecodedEvent]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.envelope.id not in seen:
            seen.add(event.envelope.id)
            unique.append(event)
    return unique


def _position(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _event_id(record: Record) -> str:
    try:
        return decode(record.value).id
    except DecodeError:
        return ""


def _fqcn(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


__all__ = ["BatchHandler", "ConsumerConfig", "EventConsumer", "TopicPartition"]
