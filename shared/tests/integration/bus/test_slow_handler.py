"""R6: a handler that stalls past `max_poll_interval_ms` neither stalls its partition nor
gets its consumer evicted.

`max_poll_interval_ms` is lowered to 10 s and the batch timeout to 5 s. The first time the
handler meets one event it stalls for 15 s (the interval + 5 s), as a hung downstream
call would. The batch times out, is applied one event at a time, and the stalled event's
retry goes through: it is applied exactly once, the events after it within twice the
interval, and the consumer never leaves its group, so no batch is delivered twice.

Protection: the batch timeout, kept under `max_poll_interval_ms` by the start-up guard.
Negative control: a 60 s timeout, with the guard that refuses it patched out. aiokafka
then leaves the group while the handler waits, and rejoins when the consumer polls again;
the figure that must fail: partitions revoked (`cascade_consumer_partitions_revoked`) > 0,
where the protected run has none. In a group of several members the evicted consumer's
partitions would move, and its batch be applied by another member meanwhile. Alone in
its group it loses nothing: the offsets it hands over on the way out are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging import consumer as consumer_module
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, read_effects, record_effects
from cascade.shared.testing.harness import (
    consumer_in_this_process,
    counter_total,
    history,
    produce_envelopes,
)
from cascade.shared.testing.kafka import create_topics, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
MAX_POLL_INTERVAL_S = 10
STALL_S = MAX_POLL_INTERVAL_S + 5
STALLED_SEQ = 50  # of key ACC-00000: a few hundred events into the partition


class StallingHandler:
    """Records effects; stalls once, the first time it meets the stalled step."""

    def __init__(self) -> None:
        self.stalled_at: float | None = None

    async def __call__(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        stalled = any(
            e.envelope.subject == "ACC-00000" and getattr(e.payload, "seq", None) == STALLED_SEQ
            for e in events
        )
        if stalled and self.stalled_at is None:
            self.stalled_at = time.monotonic()
            await asyncio.sleep(STALL_S)  # the injected stall itself
        await record_effects(session, events, "slow-handler-test")


async def _run_with_stall(
    database_url: str, bootstrap: str, batch_timeout_s: float
) -> tuple[float, BusMetrics, list[tuple[str, str, int]]]:
    """Returns the seconds from the stall until every event was applied, the consumer's
    metrics, and the effects."""
    topic, dead_letters = unique_name("slow-events"), unique_name("slow-dlq")
    await create_topics(bootstrap, [topic, dead_letters], partitions=1)
    produced = await produce_envelopes(bootstrap, topic, make_steps(N_EVENTS, 10))
    config = ConsumerConfig(
        unique_name("slow"),
        (topic,),
        dead_letters,
        max_records=200,
        batch_timeout_s=batch_timeout_s,
    )
    handler, metrics = StallingHandler(), BusMetrics()
    async with consumer_in_this_process(
        database_url,
        bootstrap,
        config,
        handler,
        metrics=metrics,
        max_poll_interval_ms=MAX_POLL_INTERVAL_S * 1000,
    ):

        async def all_applied() -> bool:
            return {e for e, _, _ in await read_effects(database_url)} >= {
                p.event_id for p in produced
            }

        await wait_until_async(all_applied, 120, "every event to be applied")
        assert handler.stalled_at is not None, "the stall was never injected"
        progress_s = time.monotonic() - handler.stalled_at
    report = await history(database_url, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    return progress_s, metrics, await read_effects(database_url)


async def test_a_stalled_handler_is_cut_short_and_its_partition_moves_on(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    progress_s, metrics, effects = await _run_with_stall(
        bus_database, kafka_bootstrap_servers, batch_timeout_s=5
    )

    stalled = [e for e in effects if e[1:] == ("ACC-00000", STALLED_SEQ)]
    assert len(stalled) == 1, "the stalled event must be applied exactly once"
    assert progress_s <= 2 * MAX_POLL_INTERVAL_S, f"all applied {progress_s:.1f}s after the stall"
    assert counter_total(metrics.partitions_revoked) == 0, "the consumer was evicted from its group"
    assert counter_total(metrics.duplicates) == 0, "a batch was delivered twice"


async def test_negative_control_without_the_batch_timeout_the_consumer_is_evicted(
    bus_database: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guard refuses a batch timeout over max_poll_interval_ms at start-up.
    monkeypatch.setattr(consumer_module, "verify_consumer", lambda *_, **__: None)
    _, metrics, _ = await _run_with_stall(bus_database, kafka_bootstrap_servers, batch_timeout_s=60)

    revoked = counter_total(metrics.partitions_revoked)
    assert revoked > 0, "protection: the batch timeout; figure: partitions revoked (evictions)"
