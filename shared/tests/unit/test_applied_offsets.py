"""Applied offsets go to Kafka after the interval, for the partitions still owned only."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, TopicPartition

from cascade.shared.messaging.offsets import AppliedOffsets

pytestmark = pytest.mark.unit

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def batch(tp: TopicPartition, *offsets: int) -> dict[TopicPartition, list[Any]]:
    records = [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"v", None, 1, 1, ()) for o in offsets
    ]
    return {tp: records}


class RecordingConsumer:
    """Stands in for AIOKafkaConsumer's assignment() and commit()."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


async def test_offsets_wait_for_the_interval_then_go_once() -> None:
    applied = AppliedOffsets(interval_s=3600)
    applied.add(batch(P0, 5, 6), owned={P0, P1})
    applied.add(batch(P0, 7), owned={P0, P1})
    assert not applied.due()
    consumer = RecordingConsumer({P0, P1})
    assert await applied.commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{P0: 8}]  # the offset after the last applied record
    assert not await applied.commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{P0: 8}]


async def test_with_no_interval_applied_offsets_are_due_at_once() -> None:
    applied = AppliedOffsets(interval_s=0)
    assert not applied.due()  # nothing waiting
    applied.add(batch(P1, 0), owned={P1})
    assert applied.due()


async def test_a_partition_revoked_before_its_batch_was_recorded_is_not_committed() -> None:
    applied = AppliedOffsets(interval_s=0)
    applied.add(batch(P0, 1) | batch(P1, 9), owned={P1})  # P0 moved to another member
    consumer = RecordingConsumer({P0, P1})  # even if P0 comes back later
    await applied.commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{P1: 10}]


class RefusingConsumer(RecordingConsumer):
    """A commit that Kafka refuses (a rebalance under way)."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise CommitFailedError("the group rebalanced")


async def test_refused_offsets_wait_for_the_next_commit_unless_newer_ones_came() -> None:
    applied = AppliedOffsets(interval_s=0)
    applied.add(batch(P0, 3) | batch(P1, 4), owned={P0, P1})
    assert not await applied.commit(RefusingConsumer({P0}))  # type: ignore[arg-type]
    applied.add(batch(P0, 1), owned={P0})  # an older offset must not win
    consumer = RecordingConsumer({P0, P1})
    await applied.commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{P0: 4}]  # P1 was no longer ours when refused


async def test_a_hand_over_commits_then_forgets_the_revoked_partitions() -> None:
    applied = AppliedOffsets(interval_s=3600)
    applied.add(batch(P0, 3) | batch(P1, 4), owned={P0, P1})
    refusing = RefusingConsumer({P0, P1})
    await applied.hand_over(refusing, revoked={P0})  # type: ignore[arg-type]
    consumer = RecordingConsumer({P0, P1})
    await applied.commit(consumer)  # type: ignore[arg-type]
    assert consumer.commits == [{P1: 5}]
