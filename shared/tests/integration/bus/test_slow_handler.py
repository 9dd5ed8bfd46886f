"""R6: a handler that stalls past `max_poll_interval_ms` neither stalls its partition nor
gets its consumer evicted from the group.

`max_poll_interval_ms` is lowered to 10 s and the batch timeout to 5 s. The handler stalls
for 15 s (the interval + 5 s) on one event, as a hung downstream call would:
* once: the batch times out and is applied one event at a time; the stalled event's retry
  goes through, so it is applied exactly once, and the events after it within twice the
  interval;
* at every attempt: each attempt is cut at 5 s, and the event is dead-lettered after the
  third; the others are applied once.
In neither case does the consumer leave its group (no rebalance takes its partition).

Protections, and the negative controls that switch each off; the figure that must then
fail is the rebalances (`cascade_consumer_rebalances`) > 0, where the protected runs have
none:
* the batch timeout, kept under `max_poll_interval_ms` by the start-up guard: a 60 s
  timeout (the guard patched out) lets the single stall run its 15 s;
* the polls while a batch is applied one event at a time (`stay_in_group`): without
  them, three attempts of 5 s add up past the interval. Each eviction abandons the batch,
  which comes again and stalls again: the livelock aiokafka#848 describes, so progress
  (every other event applied within 4 intervals) fails too.
And when a second member joins while the batch is applied one event at a time, the first
abandons it at its next event; the batch comes again to whichever member holds the
partition, which parks the event: one dead letter, every other event applied once and in
order. Negative control, abandoning switched off: the first member parks the event too,
so the figure that must fail is the dead letters: 2, not 1.
Evicted, a consumer alone in its group loses nothing (the offsets it hands over on the way
out are accepted); in a group of several, its partition would move to another member,
which would fetch the same batch again while the handler still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging import batch as batch_module
from cascade.shared.messaging import consumer as consumer_module
from cascade.shared.messaging.batch import FetchedBatch
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.metrics import BusMetrics, counter_total
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, read_effects, record_effects
from cascade.shared.testing.harness import (
    consumer_in_this_process,
    history,
    produce_envelopes,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import create_topics, record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
MAX_POLL_INTERVAL_S = 10
STALL_S = MAX_POLL_INTERVAL_S + 5
STALLED = ("ACC-00000", 52)  # key and seq: offset 520 of the one partition
MAX_ATTEMPTS = 3
# Long enough for three stalled attempts and the rest (about 25 s), and 4 intervals.
PROGRESS_DEADLINE_S = 4 * MAX_POLL_INTERVAL_S + 5
# A second parking takes the event's attempts again: 3 of at most 5 s, and their backoff.
DEAD_LETTERS_DEADLINE_S = 60


class StallingHandler:
    """Records effects; stalls on the stalled step, once or at every attempt."""

    def __init__(self, *, every_attempt: bool) -> None:
        self.every_attempt = every_attempt
        self.stalled_at: float | None = None

    async def __call__(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        stalls = self.stalled_at is None or self.every_attempt
        if stalls and any(
            (e.envelope.subject, getattr(e.payload, "seq", None)) == STALLED for e in events
        ):
            self.stalled_at = self.stalled_at or time.monotonic()
            await asyncio.sleep(STALL_S)  # the injected stall itself
        await record_effects(session, events, "slow-handler-test")


@dataclass(frozen=True)
class Outcome:
    progress_s: float | None  # from the first stall until all is applied; None: not by then
    rebalances: float
    stalled_applied: int
    dead_letters: int


async def _events_for_a_new_group(
    bootstrap: str, batch_timeout_s: float
) -> tuple[ConsumerConfig, list[Produced]]:
    """Produces N_EVENTS to a new one-partition topic; returns a new group's consumer
    configuration for it and the events."""
    topic, dead_letter_topic = unique_name("slow-events"), unique_name("slow-dlq")
    await create_topics(bootstrap, [topic, dead_letter_topic], partitions=1)
    produced = await produce_envelopes(bootstrap, topic, make_steps(N_EVENTS, 10))
    config = ConsumerConfig(
        unique_name("slow"),
        (topic,),
        dead_letter_topic,
        max_records=50,
        max_attempts=MAX_ATTEMPTS,
        batch_timeout_s=batch_timeout_s,
    )
    return config, produced


async def _run_with_stall(
    database_url: str, bootstrap: str, *, batch_timeout_s: float, every_attempt: bool
) -> Outcome:
    """Runs a consumer until every event it can apply is applied, or PROGRESS_DEADLINE_S
    after the stall; checks that nothing was lost, doubled or invented by then."""
    config, produced = await _events_for_a_new_group(bootstrap, batch_timeout_s)
    expected = [p for p in produced if (p.key, p.seq) != STALLED or not every_attempt]
    handler, metrics = StallingHandler(every_attempt=every_attempt), BusMetrics()
    async with consumer_in_this_process(
        database_url,
        bootstrap,
        config,
        handler,
        metrics=metrics,
        max_poll_interval_ms=MAX_POLL_INTERVAL_S * 1000,
    ):
        progress_s = await _progress(database_url, expected, handler)
    effects = await read_effects(database_url)
    if progress_s is not None:
        report = await history(database_url, expected)
        assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    return Outcome(
        progress_s=progress_s,
        rebalances=counter_total(metrics.rebalances),
        stalled_applied=sum(1 for _, key, seq in effects if (key, seq) == STALLED),
        dead_letters=await record_count(bootstrap, [config.dead_letter_topic]),
    )


async def _progress(
    database_url: str, expected: list[Produced], handler: StallingHandler
) -> float | None:
    """Returns the seconds from the first stall until every expected event was applied,
    or None if that takes longer than PROGRESS_DEADLINE_S."""
    wanted = {p.event_id for p in expected}

    async def stalled() -> bool:
        return handler.stalled_at is not None

    async def all_applied() -> bool:
        return {event_id for event_id, _, _ in await read_effects(database_url)} >= wanted

    await wait_until_async(stalled, 60, "the handler to stall")
    try:
        await wait_until_async(all_applied, PROGRESS_DEADLINE_S, "every event", interval=0.5)
    except TimeoutError:
        return None
    assert handler.stalled_at is not None
    return time.monotonic() - handler.stalled_at


async def test_a_handler_stalled_once_is_cut_short_and_its_partition_moves_on(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    outcome = await _run_with_stall(
        bus_database, kafka_bootstrap_servers, batch_timeout_s=5, every_attempt=False
    )

    assert outcome.stalled_applied == 1, "the stalled event must be applied exactly once"
    assert outcome.progress_s is not None, "the partition did not move on"
    assert outcome.progress_s <= 2 * MAX_POLL_INTERVAL_S, f"{outcome.progress_s:.1f}s to apply all"
    assert outcome.rebalances == 0, "the consumer left its group"
    assert outcome.dead_letters == 0


async def test_an_event_that_stalls_at_every_attempt_is_dead_lettered_without_an_eviction(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    outcome = await _run_with_stall(
        bus_database, kafka_bootstrap_servers, batch_timeout_s=5, every_attempt=True
    )

    assert outcome.progress_s is not None, "the partition did not move on"
    assert (outcome.stalled_applied, outcome.dead_letters) == (0, 1)
    assert outcome.rebalances == 0, "the consumer left its group"


async def test_negative_control_without_the_batch_timeout_a_stall_evicts_the_consumer(
    bus_database: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start-up guard refuses a batch timeout over max_poll_interval_ms.
    monkeypatch.setattr(consumer_module, "verify_consumer", lambda *_, **__: None)
    outcome = await _run_with_stall(
        bus_database, kafka_bootstrap_servers, batch_timeout_s=60, every_attempt=False
    )

    assert outcome.rebalances > 0, "protection: the batch timeout; figure: rebalances"


async def test_negative_control_without_polls_between_attempts_they_evict_the_consumer(
    bus_database: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_poll(_: AIOKafkaConsumer) -> None:
        pass

    monkeypatch.setattr(batch_module, "stay_in_group", no_poll)
    outcome = await _run_with_stall(
        bus_database, kafka_bootstrap_servers, batch_timeout_s=5, every_attempt=True
    )

    # Evicted, the consumer abandons the batch; the batch comes again, stalls again, and
    # evicts it again: the partition never moves past the stalled event.
    assert outcome.rebalances > 0, "protection: stay_in_group; figure: rebalances"
    assert outcome.progress_s is None, "protection: stay_in_group; figure: progress"


async def _second_member_joins_during_the_fallback(
    database_url: str, bootstrap: str, wait_for_dead_letters: int = 1
) -> int:
    """A consumer stalls on the event at every attempt; while its batch times out, a
    second member joins the group. Returns the dead letters once the group has committed
    every record and, for up to DEAD_LETTERS_DEADLINE_S more, once there are
    `wait_for_dead_letters`, after checking that every other event was applied once, in
    order."""
    config, produced = await _events_for_a_new_group(bootstrap, batch_timeout_s=5)
    expected = [p for p in produced if (p.key, p.seq) != STALLED]
    handler = StallingHandler(every_attempt=True)

    def member() -> AbstractAsyncContextManager[None]:
        interval_ms = MAX_POLL_INTERVAL_S * 1000
        return consumer_in_this_process(
            database_url, bootstrap, config, handler, max_poll_interval_ms=interval_ms
        )

    async def stalled() -> bool:
        return handler.stalled_at is not None

    async with member():
        await wait_until_async(stalled, 60, "the handler to stall")
        async with member():
            await _progress(database_url, expected, handler)
            await wait_lag_zero(bootstrap, config.group_id, config.topics, deadline_s=120)

            async def parked() -> bool:
                count = await record_count(bootstrap, [config.dead_letter_topic])
                return count >= wait_for_dead_letters

            # The group may commit past the event before a member that went on parks it
            # again (the partition came back to the first member): its figure comes later.
            with contextlib.suppress(TimeoutError):
                await wait_until_async(parked, DEAD_LETTERS_DEADLINE_S, "the dead letters")
    report = await history(database_url, expected)
    assert report.lost == report.duplicated == report.phantom == 0, str(report)
    assert report.order_violations == 0, str(report)
    return await record_count(bootstrap, [config.dead_letter_topic])


async def test_a_rebalance_during_the_one_by_one_fallback_abandons_the_batch(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    dead_letters = await _second_member_joins_during_the_fallback(
        bus_database, kafka_bootstrap_servers
    )

    # The first member stopped before its last attempt; the batch came again, to whichever
    # member holds the partition now, and it parked the event.
    assert dead_letters == 1


async def test_negative_control_going_on_after_a_rebalance_dead_letters_the_event_twice(
    bus_database: str, kafka_bootstrap_servers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_abandoned(batch: FetchedBatch) -> bool:
        await batch_module.stay_in_group(batch.consumer)
        return True

    monkeypatch.setattr(FetchedBatch, "still_ours", never_abandoned)
    dead_letters = await _second_member_joins_during_the_fallback(
        bus_database, kafka_bootstrap_servers, wait_for_dead_letters=2
    )

    # The first member parks the event, and the batch comes again all the same (to the
    # new member, or to it from the committed offset): parked a second time.
    assert dead_letters == 2, "protection: abandoning the batch; figure: dead letters"
