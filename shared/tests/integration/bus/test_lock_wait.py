"""R6 and R14, a migration's lock: an attempt that waits on another session's lock is not
a slow event.

A migration takes the effect table's ACCESS EXCLUSIVE lock, as `ALTER TABLE` does (or as a
session stuck in a transaction holds a row lock), and keeps it LOCK_S = 20 s while 400
events arrive. The database commits meanwhile; only the handler's statements wait. The
batch timeout is 3 s and the attempts per event 3, so the lock outlasts the one-by-one
fallback's three attempts; `max_poll_interval_ms` is 15 s. A consumer has applied 100
events first. Pass: once the lock is released, every event is applied within 60 s, exactly
once and in order; the group's lag is 0; no event is dead-lettered; the consumer never
left its group; its log shows an attempt cut while blocked, so the lock is known to have
reached it, and none blamed on the batch or an event.

The consumer's pool has one connection, which the blocked attempt holds, as when requests
have taken a service's whole pool.

Protections, and the negative controls that switch each off; the figure that must then
fail is the dead letters (> 0: good events parked while a migration held its lock):
* an attempt the batch timeout cuts while its server process waits on another session's
  lock (`pg_blocking_pids`) is retried without counting against the events. Switched off
  (every cut attempt taken as not blocked), the database commits the probe, so the events
  are blamed;
* the lock check and the probe ask on connections of their own. Switched off (asked on
  the consumer's pool), the check waits for the held connection and goes unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from cascade.shared.messaging import lock_watch
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.metrics import BusMetrics, counter_total
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, record_effects
from cascade.shared.testing.harness import (
    applied_within,
    assert_exactly_once_in_order,
    consumer_in_this_process,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.kafka import create_topics, record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, DURING = 100, 400  # events applied before the lock is taken, and arriving while held
LOCK_S = 20.0  # the control parks its first event about 13 s in
MAX_POLL_INTERVAL_S = 15
RECOVERY_S = 60.0
BLAMED = ("consumer.batch_timed_out", "consumer.handler_failed")


@dataclass(frozen=True)
class Outcome:
    recovered_s: float | None  # from the release until every event is applied; None: not by then
    dead_letters: int
    rebalances: float
    cut_while_blocked: int  # attempts the batch timeout cut while they waited on the lock
    blamed: int  # attempts blamed on the batch or an event (timed out, handler failed)


async def _record_effects(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    await record_effects(session, events, "lock-wait-test")


@asynccontextmanager
async def _migration_lock(database_url: str) -> AsyncIterator[None]:
    """Holds the effect table's ACCESS EXCLUSIVE lock, in a transaction, while the block runs."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("LOCK TABLE bus_effect IN ACCESS EXCLUSIVE MODE"))
            yield
            await connection.rollback()
    finally:
        await engine.dispose()


async def _lock_while_consuming(
    database_url: str, bootstrap: str, *, recovery: bool = True, own_probe: bool = True
) -> Outcome:
    topic, dead_letter_topic = unique_name("locked"), unique_name("locked-dlq")
    await create_topics(bootstrap, [topic, dead_letter_topic], partitions=1)
    steps = make_steps(BEFORE + DURING, 10)
    config = ConsumerConfig(
        unique_name("locked"),
        (topic,),
        dead_letter_topic,
        max_records=50,
        max_attempts=3,
        batch_timeout_s=3,
    )
    metrics, recovered_s = BusMetrics(), None
    async with consumer_in_this_process(
        database_url,
        bootstrap,
        config,
        _record_effects,
        metrics=metrics,
        max_poll_interval_ms=MAX_POLL_INTERVAL_S * 1000,
        # The attempt holds the pool's one connection: the lock check needs its own.
        pool_size=1,
        max_overflow=0,
        own_probe=own_probe,
    ):
        produced = await produce_envelopes(bootstrap, topic, steps[:BEFORE])
        await wait_all_applied(database_url, produced, deadline_s=60)
        with capture_logs() as logs:
            async with _migration_lock(database_url):
                produced += await produce_envelopes(bootstrap, topic, steps[BEFORE:])
                await asyncio.sleep(LOCK_S)  # the fault itself: the lock held this long
            if recovery:
                recovered_s = await applied_within(database_url, produced, RECOVERY_S)
        if recovered_s is not None:
            await wait_lag_zero(bootstrap, config.group_id, config.topics, deadline_s=60)
    if recovered_s is not None:
        await assert_exactly_once_in_order(database_url, produced)
    return Outcome(
        recovered_s=recovered_s,
        dead_letters=await record_count(bootstrap, [dead_letter_topic]),
        rebalances=counter_total(metrics.rebalances),
        cut_while_blocked=sum(1 for line in logs if line["event"] == "consumer.blocked_by_lock"),
        blamed=sum(1 for line in logs if line["event"] in BLAMED),
    )


async def test_a_migration_lock_parks_no_event_and_keeps_the_consumer_in_its_group(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    outcome = await _lock_while_consuming(bus_database, kafka_bootstrap_servers)

    assert outcome.cut_while_blocked > 0, "the lock never reached the consumer"
    assert outcome.blamed == 0, "an attempt cut while blocked was blamed on the events"
    assert outcome.recovered_s is not None, f"not all applied {RECOVERY_S}s after the release"
    assert outcome.dead_letters == 0, "good events were parked while a lock was held"
    assert outcome.rebalances == 0, "the consumer left its group"


async def test_negative_control_without_the_lock_check_a_migration_parks_good_events(
    bus_database: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_blocked(*_: object) -> None:
        return None

    monkeypatch.setattr(lock_watch, "blockers_of", never_blocked)
    outcome = await _lock_while_consuming(bus_database, kafka_bootstrap_servers, recovery=False)

    assert outcome.dead_letters > 0, "protection: the lock check; figure: dead letters"


async def test_negative_control_a_lock_check_on_the_busy_pool_goes_unanswered(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    outcome = await _lock_while_consuming(
        bus_database, kafka_bootstrap_servers, recovery=False, own_probe=False
    )

    assert outcome.dead_letters > 0, (
        "protection: the lock check's connection of its own; figure: dead letters"
    )
