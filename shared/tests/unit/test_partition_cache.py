"""The relay's partition cache picks the partition aiokafka's default partitioner picks."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from cascade.shared.messaging.batching import PartitionCache


@given(
    keys=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_the_cached_partition_is_the_default_partitioners(
    keys: list[bytes], partitions: int
) -> None:
    known = list(range(partitions))
    cache = PartitionCache(max_keys=7)  # small: the clearing path is taken too
    for _ in range(2):  # the second pass is answered from the cache
        for key in keys:
            assert cache.partition("t", key, known) == DefaultPartitioner()(key, known, known)


def test_a_topic_that_gains_partitions_is_hashed_again() -> None:
    cache = PartitionCache()
    keys = [f"ACC-{i}".encode() for i in range(100)]
    assert {cache.partition("t", key, [0]) for key in keys} == {0}
    assert len({cache.partition("t", key, list(range(6))) for key in keys}) > 1
