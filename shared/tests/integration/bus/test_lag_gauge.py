"""The consumer lag gauge after a rebalance: each partition reported by the replica that holds it.

A replica that loses partitions, or stops, drops their gauge (offsets.forget_lag). Kept, the
stale value would count their records twice in a sum over the replicas, and could keep a lag
alert firing for records the partition's new owner has consumed since.

Two consumers of one group in this process, on a 2-partition topic with events arriving:
the first alone holds both partitions and reports both; the second joins and takes one,
then stops (leaving the group without a revocation) and must report none.
Protection: dropping the gauge of revoked partitions. Negative control, switched off: the
figure that must fail is the partitions both replicas report (> 0, where it must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging import consumer as consumer_module
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, record_effects
from cascade.shared.testing.harness import consumer_in_this_process, produce_envelopes
from cascade.shared.testing.kafka import create_topics, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _record(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    await record_effects(session, events, "lag-gauge-test")


def _reported(registry: CollectorRegistry) -> set[str]:
    """The partitions whose lag this replica reports."""
    return {
        sample.labels["partition"]
        for metric in registry.collect()
        if metric.name == "cascade_consumer_lag"
        for sample in metric.samples
    }


@contextlib.asynccontextmanager
async def _events_arriving(bootstrap: str, topic: str) -> AsyncIterator[None]:
    """Produces a few events for each partition every 0.2 s while the block runs."""

    async def produce() -> None:
        start = 0
        while True:
            await produce_envelopes(bootstrap, topic, make_steps(20, 10, start=start))
            start += 20
            await asyncio.sleep(0.2)  # pacing the load, not synchronisation

    task = asyncio.create_task(produce())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("forget", [True, False], ids=["protected", "negative-control"])
async def test_a_replica_reports_the_lag_only_of_the_partitions_it_holds(
    forget: bool,
    bus_database: str,
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not forget:
        monkeypatch.setattr(consumer_module, "forget_lag", lambda *_: None)
    topic, dead_letters = unique_name("lag"), unique_name("lag-dlq")
    await create_topics(kafka_bootstrap_servers, [topic, dead_letters], partitions=2)
    config = ConsumerConfig(unique_name("lag"), (topic,), dead_letters, max_records=50)
    first, second = CollectorRegistry(), CollectorRegistry()

    def run(registry: CollectorRegistry) -> AbstractAsyncContextManager[None]:
        return consumer_in_this_process(
            bus_database, kafka_bootstrap_servers, config, _record, metrics=BusMetrics(registry)
        )

    async with _events_arriving(kafka_bootstrap_servers, topic), run(first):

        async def both_reported_by_the_first() -> bool:
            return _reported(first) == {"0", "1"}

        await wait_until_async(both_reported_by_the_first, 60, "the first replica's lags")
        async with run(second):

            async def shared_out() -> bool:
                # Taken from the first (a rebalance), reported by the second, and the first
                # has fetched again since (it reports the one partition it kept, at least).
                return bool(_reported(second)) and _reported(first) - _reported(second) != set()

            await wait_until_async(shared_out, 60, "the second replica to take a partition")
            overlap = _reported(first) & _reported(second)
            union = _reported(first) | _reported(second)
        # Stopped, the second left the group without a revocation: its gauge goes too.
        after_stop = _reported(second)

    if forget:
        assert (overlap, union, after_stop) == (set(), {"0", "1"}, set())
    else:
        assert overlap, "protection: dropping revoked partitions' lag; figure: overlap"
