"""Committing consumed offsets and measuring lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cascade.shared.logging import get_logger
from cascade.shared.messaging.metrics import BusMetrics

log = get_logger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def next_offsets(fetched: Fetched) -> dict[TopicPartition, int]:
    """Returns, per partition, the offset after the batch's last record."""
    return {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}


class AppliedOffsets:
    """Offsets of batches committed to the database and not yet to Kafka.

    Committed to Kafka at most every `interval_s`, when partitions are revoked and when
    the consumer stops, rather than after every batch: each commit is a request to the
    group coordinator and a write to its log, and a crash in between only redelivers
    events that the inbox then skips (as Kafka's own auto-commit interval does, but
    never ahead of the database).
    """

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._offsets: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        # One commit at a time (the loop's and the rebalance listener's): an older commit
        # can then never land after a newer one and move an offset back.
        self._committing = asyncio.Lock()

    def add(self, fetched: Fetched, owned: Collection[TopicPartition]) -> None:
        """Records a batch whose database transaction has committed, for the partitions
        `owned` (a partition already reassigned is not for us to commit any more). A
        redelivered batch cannot take a partition's offset back."""
        self._keep(next_offsets(fetched), owned)

    def _keep(
        self, offsets: Mapping[TopicPartition, int], owned: Collection[TopicPartition]
    ) -> None:
        """Keeps offsets of the `owned` partitions waiting; the newest offset wins."""
        for tp, offset in offsets.items():
            if tp in owned:
                self._offsets[tp] = max(offset, self._offsets.get(tp, offset))

    def due(self) -> bool:
        """Whether the interval has passed with offsets waiting."""
        waited = time.monotonic() - self._committed_at
        return bool(self._offsets) and waited >= self._interval_s

    async def commit_if_due(self, consumer: AIOKafkaConsumer) -> bool:
        """Commits the waiting offsets if the interval has passed; returns whether it did."""
        return self.due() and await self.commit(consumer)

    async def commit(self, consumer: AIOKafkaConsumer) -> bool:
        """Commits the waiting offsets; returns whether Kafka took them.

        Offsets Kafka refused stay waiting for the next commit, for the partitions still
        assigned (a newer offset recorded meanwhile wins).
        """
        async with self._committing:
            offsets, self._offsets = self._offsets, {}
            self._committed_at = time.monotonic()
            if not offsets or await commit_positions(consumer, offsets):
                return bool(offsets)
            self._keep(offsets, consumer.assignment())
            return False

    async def hand_over(
        self, consumer: AIOKafkaConsumer, revoked: Collection[TopicPartition]
    ) -> None:
        """On revocation: commits what was applied, then forgets the revoked partitions,
        whose next owner continues from there."""
        await self.commit(consumer)
        async with self._committing:
            for tp in revoked:
                self._offsets.pop(tp, None)


async def commit_offsets(consumer: AIOKafkaConsumer, fetched: Fetched) -> bool:
    """Commits the offsets after each partition's last record; tolerates a rebalance."""
    return await commit_positions(consumer, next_offsets(fetched))


async def commit_positions(
    consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
) -> bool:
    """Commits offsets of the partitions still assigned; tolerates a rebalance.

    A failed commit is safe: the records are redelivered and the inbox skips them
    (aiokafka raises CommitFailedError when the group rebalanced meanwhile).
    """
    owned = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not offsets:
        return False
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, KafkaError) as error:
        log.warning("consumer.commit_failed", error_class=type(error).__name__)
        return False
    return True


def forget_lag(metrics: BusMetrics, revoked: Collection[TopicPartition]) -> None:
    """Drops the lag gauge of partitions this replica no longer holds: their new owner
    reports it, and a stale value here would count the same records twice in a sum over
    the replicas, or keep an alert firing for records consumed since."""
    for tp in revoked:  # a partition never fetched here has no gauge: remove() ignores it
        metrics.consumer_lag.remove(tp.topic, str(tp.partition))


def record_lag(consumer: AIOKafkaConsumer, fetched: Fetched, metrics: BusMetrics) -> None:
    """Sets the lag gauge of each partition in the batch from its high watermark."""
    held = consumer.assignment()
    for tp, records in fetched.items():
        if tp not in held:
            continue  # a rebalance moved it meanwhile: aiokafka would refuse to answer
        highwater = consumer.highwater(tp)
        if records and highwater is not None:
            lag = max(highwater - (records[-1].offset + 1), 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
