"""Committing consumed offsets and measuring lag."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cascade.shared.logging import get_logger
from cascade.shared.messaging.metrics import BusMetrics

log = get_logger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


async def commit_offsets(consumer: AIOKafkaConsumer, fetched: Fetched) -> bool:
    """Commits the offsets after each partition's last record; tolerates a rebalance.

    A failed commit is safe: the records are redelivered and the inbox skips them
    (aiokafka raises CommitFailedError when the group rebalanced meanwhile).
    """
    offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
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


def record_lag(consumer: AIOKafkaConsumer, fetched: Fetched, metrics: BusMetrics) -> None:
    """Sets the lag gauge of each partition in the batch from its high watermark."""
    for tp, records in fetched.items():
        highwater = consumer.highwater(tp)
        if records and highwater is not None:
            lag = max(highwater - (records[-1].offset + 1), 0)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
