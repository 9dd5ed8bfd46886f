"""The idempotent consumer: at-least-once delivery, exactly-once effects.

Per fetched batch: decode; dead-letter the bad records (acknowledged first); then in one
database transaction record every event id in the inbox and apply the handler's effects
for the new ones; only after the database commit, commit the offsets. A crash anywhere
means redelivery, and redelivery is a no-op thanks to the inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import bind_context, get_logger
from cascade.shared.messaging import inbox
from cascade.shared.messaging.availability import BEYOND_BATCH_TIMEOUT_S, events_to_blame
from cascade.shared.messaging.backoff import Backoff
from cascade.shared.messaging.batch import (
    DeadLetterFailedError,
    FetchedBatch,
    FinishBatchOnRevoke,
    Record,
    checked_order,
    decode_batch,
    fqcn,
    handler_failed_letter,
    position,
)
from cascade.shared.messaging.consumer_config import ConsumerConfig
from cascade.shared.messaging.dead_letters import DeadLetter, DeadLetterPublisher
from cascade.shared.messaging.faults import crash_point
from cascade.shared.messaging.lock_watch import BlockedCuts, LockWatch, backend_pid
from cascade.shared.messaging.metrics import BusMetrics, count_by_type
from cascade.shared.messaging.offsets import (
    AppliedOffsets,
    commit_offsets,
    forget_lag,
    record_lag,
)
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry
from cascade.shared.messaging.rejections import Rejection, dead_letter_of
from cascade.shared.messaging.safety import UnsafeConfigError, verify_consumer, verify_producer

log = get_logger(__name__)

# A handler applies the batch's new events; it returns those it refuses on business rules.
BatchHandler = Callable[
    [AsyncSession, Sequence[DecodedEvent]], Awaitable[Sequence[Rejection] | None]
]


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
        probe_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`probe_sessions` asks whether the database answers and whether a cut attempt
        waited on a lock: best on connections of their own (db.make_probe_engine), so that
        a pool that requests have all taken cannot pass for a database that does not answer."""
        self._config = config
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._sessions = sessions
        self._probe_sessions = probe_sessions or sessions
        self._inbox = inbox_table
        self._registry = registry
        self._handler = handler
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._blocked_cuts = BlockedCuts(metrics)

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set; reconnects after broker or database outages."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                async with self._clients() as (consumer, membership, dead_letters, applied):
                    await self._consume(consumer, membership, dead_letters, applied, stop)
            except UnsafeConfigError:
                raise  # a configuration bug: retrying cannot fix it
            except Exception as error:
                log.warning("consumer.restarting", error_class=type(error).__name__)
                await backoff.wait(stop)

    @asynccontextmanager
    async def _clients(
        self,
    ) -> AsyncIterator[
        tuple[AIOKafkaConsumer, FinishBatchOnRevoke, DeadLetterPublisher, AppliedOffsets]
    ]:
        cfg = self._config
        consumer, producer = self._consumer_factory(), self._producer_factory()
        verify_producer(producer, embedded_broker=cfg.embedded_broker)
        longest_without_poll = cfg.batch_timeout_s + BEYOND_BATCH_TIMEOUT_S
        verify_consumer(consumer, max_batch_seconds=longest_without_poll)
        applied = AppliedOffsets(cfg.commit_interval_s)

        async def hand_over(gone: Collection[TopicPartition]) -> None:
            forget_lag(self._metrics, gone)
            await applied.hand_over(consumer, gone)

        listener = FinishBatchOnRevoke(self._lock, hand_over, self._metrics.rebalances)
        try:
            await producer.start()
            consumer.subscribe(list(cfg.topics), listener=listener)
            await consumer.start()
            publisher = DeadLetterPublisher(
                producer, cfg.dead_letter_topic, cfg.group_id, cfg.service_version
            )
            yield consumer, listener, publisher, applied
            await applied.commit(consumer)  # leaving the group: hand over where we are
        finally:
            # stop() leaves the group at once, so the partitions move without a timeout,
            # and without a revocation: their lag is the next owner's to report.
            forget_lag(self._metrics, consumer.assignment())
            await consumer.stop()
            await producer.stop()

    async def _consume(
        self,
        consumer: AIOKafkaConsumer,
        membership: FinishBatchOnRevoke,
        dead_letters: DeadLetterPublisher,
        applied: AppliedOffsets,
        stop: asyncio.Event,
    ) -> None:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=self._config.max_records)
            if not fetched:
                await applied.commit_if_due(consumer)
                continue
            crash_point("after_poll")
            if not self._config.offsets_after_db:  # the broken order, for R3's control only
                await commit_offsets(consumer, fetched)
            records = [r for tp in sorted(fetched) for r in fetched[tp]]
            batch = FetchedBatch(records, consumer, membership)
            try:
                if not await self._apply_until_done(batch, dead_letters, stop):
                    return  # stopping: leave the offsets, the batch will be redelivered
            finally:
                batch.done()
            if batch.abandoned:
                continue  # a rebalance: its partitions start again from committed offsets
            crash_point("after_db_commit_before_offset_commit")
            if self._config.offsets_after_db:
                applied.add(fetched, consumer.assignment())
                if await applied.commit_if_due(consumer):
                    crash_point("after_offset_commit")
            record_lag(consumer, fetched, self._metrics)

    async def _apply_until_done(
        self, batch: FetchedBatch, dead_letters: DeadLetterPublisher, stop: asyncio.Event
    ) -> bool:
        """Applies a batch, retrying while the database or the broker is unavailable, for
        as long as it takes; False when stopping first."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                async with asyncio.timeout(self._config.batch_timeout_s) as deadline:
                    await self._apply(batch, dead_letters, deadline)
                return True
            except DeadLetterFailedError as error:
                # Never skip a bad record that could not be parked: stall and retry loudly.
                log.error("consumer.dead_letter_failed", error_class=error.cause)
            except Exception as error:
                if not await batch.still_ours():  # polled: the attempt may have run long
                    return True  # abandoned after a rebalance: done with it
                if await self._events_to_blame(error, deadline):
                    if deadline.expired():
                        log.warning("consumer.batch_timed_out", records=len(batch.records))
                    # Find the event at fault, one at a time (matrix R6).
                    return await self._apply_one_by_one(batch, dead_letters, stop)
            if not await batch.wait_in_group(backoff.next_delay(), stop):
                return not stop.is_set()  # abandoned after a rebalance: done with it
        return False

    async def _events_to_blame(self, error: Exception, deadline: asyncio.Timeout) -> bool:
        if not self._config.retry_unavailable:  # the negative control of matrix R14's tests
            return True
        if self._blocked_cuts.blocked(deadline):  # waited on another session's lock
            return False
        return await events_to_blame(error, deadline, self._probe_sessions)

    async def _apply(
        self, batch: FetchedBatch, dead_letters: DeadLetterPublisher, deadline: asyncio.Timeout
    ) -> None:
        async with self._lock:
            started = time.perf_counter()
            events, bad = decode_batch(batch.records, self._registry)
            await batch.dead_letter(bad, dead_letters, self._metrics.dead_lettered)
            refused = await self._transaction(events, deadline)
            await batch.dead_letter(refused, dead_letters, self._metrics.dead_lettered)
            self._metrics.handler_seconds.observe(time.perf_counter() - started)

    async def _transaction(
        self, events: Sequence[DecodedEvent], deadline: asyncio.Timeout
    ) -> list[DeadLetter]:
        """Applies the events in one transaction; returns dead letters for those refused."""
        if not events:
            return []  # a batch of bad records only: nothing for the database
        async with self._sessions() as session, session.begin():
            pid = await backend_pid(session)
            watch = LockWatch(self._probe_sessions, pid, deadline.when())
            try:
                fresh, refused = await self._apply_in(session, events)
                crash_point("in_handler_before_db_commit")
            except asyncio.CancelledError:
                self._blocked_cuts.record(deadline, watch)
                # Cut by the batch timeout (or a stop), perhaps while the database does not
                # answer: a rollback over this connection could wait as long; dropped, the
                # server rolls the transaction back itself.
                await session.invalidate()
                raise
            finally:
                watch.stop()
        count_by_type(self._metrics.consumed, [event.envelope.type for event in fresh])
        return [dead_letter_of(rejection) for rejection in refused]

    async def _apply_in(
        self, session: AsyncSession, events: Sequence[DecodedEvent]
    ) -> tuple[Sequence[DecodedEvent], list[Rejection]]:
        """Records the events in the inbox and applies the new ones; returns those and the
        handler's refusals, which are forgotten: a replay of a refused event must apply."""
        fresh = (
            await inbox.fresh_events(
                session,
                self._inbox,
                self._config.group_id,
                events,
                self._metrics.duplicates,
                inbox.longest_keep_s(events, self._config.inbox_keep_s),
            )
            if self._config.dedup
            else events
        )
        refused = list(await self._handler(session, fresh) or ())
        if refused:
            ids = [r.event.envelope.id for r in refused]
            await inbox.forget(session, self._inbox, self._config.group_id, ids)
        return fresh, refused

    async def _apply_one_by_one(
        self, batch: FetchedBatch, dead_letters: DeadLetterPublisher, stop: asyncio.Event
    ) -> bool:
        """Isolates the failing event: each on its own, dead-lettered after N attempts.

        Returns False when stopping before the batch is done (it will be redelivered).
        """
        events, bad = decode_batch(batch.records, self._registry)
        # Dead-lettered already, unless the batch timed out before they were.
        if not await self._park(batch, bad, dead_letters, stop):
            return False
        for event in checked_order(self._config.application_order, events):
            if position(event.record) in batch.dead_lettered:
                continue
            if not await self._apply_single(batch, event.record, event, dead_letters, stop):
                return False
            if batch.abandoned:
                break
        return True

    async def _apply_single(
        self,
        batch: FetchedBatch,
        record: Record,
        event: DecodedEvent,
        dead_letters: DeadLetterPublisher,
        stop: asyncio.Event,
    ) -> bool:
        backoff = Backoff()
        bind_context(event_id=event.envelope.id, correlation_id=event.envelope.correlationid)
        attempt = 0
        while attempt < self._config.max_attempts:
            if not await batch.still_ours():
                return True
            try:
                async with asyncio.timeout(self._config.batch_timeout_s) as deadline, self._lock:
                    refused = await self._transaction([event], deadline)
                    await batch.dead_letter(refused, dead_letters, self._metrics.dead_lettered)
                return True
            except DeadLetterFailedError as error:  # the broker's doing, not the event's
                log.error("consumer.dead_letter_failed", error_class=error.cause)
            except Exception as error:
                if not await batch.still_ours():  # polled: the attempt may have run long
                    return True
                if await self._events_to_blame(error, deadline):
                    attempt += 1  # only the event's own failures count towards parking it
                    if attempt == self._config.max_attempts:
                        letter = handler_failed_letter(record, event, error, attempt)
                        return await self._park(batch, [letter], dead_letters, stop)
                    log.warning("consumer.handler_failed", attempt=attempt, error=fqcn(error))
            await batch.wait_in_group(backoff.next_delay(), stop)
            if stop.is_set():
                return False  # stopping is no reason to give up on the event
        return True

    async def _park(
        self,
        batch: FetchedBatch,
        letters: list[DeadLetter],
        dead_letters: DeadLetterPublisher,
        stop: asyncio.Event,
    ) -> bool:
        """Dead-letters `letters`, for as long as the broker refuses them, unless the batch
        is no longer this consumer's (its next holder decides); False when stopping first."""
        backoff = Backoff()
        while await batch.still_ours():
            try:
                async with self._lock:
                    await batch.dead_letter(letters, dead_letters, self._metrics.dead_lettered)
                return True
            except DeadLetterFailedError as error:  # never skip a record it could not park
                log.error("consumer.dead_letter_failed", error_class=error.cause)
            await batch.wait_in_group(backoff.next_delay(), stop)
            if stop.is_set():
                return False
        return True


__all__ = ["BatchHandler", "ConsumerConfig", "EventConsumer"]
