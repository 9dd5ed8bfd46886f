"""The one-at-a-time fallback applies a batch's events in the handler's order, not the batch's.

A batch the handler fails on is retried one event at a time, to find and dead-letter the
event at fault. The others must then take effect in the order the handler gives a batch
(ConsumerConfig.application_order): accounts counts a day's account events before its close,
and a fallback that went by partition instead would apply the close first.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, read_effects, record_effects
from cascade.shared.testing.harness import consumer_in_this_process, produce_envelopes
from cascade.shared.testing.kafka import create_topics, unique_name

pytestmark = pytest.mark.integration

POISONED_SEQ = 5


class PoisonedStepError(Exception):
    """The handler's permanent failure on one step."""


def _seq(event: DecodedEvent) -> int:
    seq: int = getattr(event.payload, "seq", -1)
    return seq


def latest_first(events: Sequence[DecodedEvent]) -> list[DecodedEvent]:
    """The test handler's order: the reverse of the events' offsets on the one partition."""
    return sorted(events, key=_seq, reverse=True)


BATCH_SIZES: list[int] = []


async def _handle(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    BATCH_SIZES.append(len(events))
    if any(_seq(event) == POISONED_SEQ for event in events):
        raise PoisonedStepError(f"step {POISONED_SEQ} is poisoned")
    await record_effects(session, latest_first(events), "fallback-test")


async def test_fallback_applies_events_in_the_handlers_order(
    bus_database: str, kafka_bootstrap_servers: str
) -> None:
    BATCH_SIZES.clear()
    events_topic, dead_letters = unique_name("fallback-events"), unique_name("fallback-dlq")
    await create_topics(kafka_bootstrap_servers, [events_topic, dead_letters], partitions=1)
    # One key, seq 0..9 at offsets 0..9, produced before the consumer starts: one batch.
    await produce_envelopes(kafka_bootstrap_servers, events_topic, make_steps(10, 1))
    config = ConsumerConfig(
        unique_name("fallback"),
        (events_topic,),
        dead_letters,
        max_attempts=1,
        application_order=latest_first,
    )
    async with consumer_in_this_process(bus_database, kafka_bootstrap_servers, config, _handle):

        async def nine_applied() -> bool:
            return len(await read_effects(bus_database)) == 9

        await wait_until_async(nine_applied, 60, "the nine good steps to be applied")

    applied = [seq for _, _, seq in await read_effects(bus_database)]
    assert BATCH_SIZES[0] == 10, "the ten steps were not fetched as one batch"
    # The batch's own order (offsets) would be 0, 1, 2, 3, 4, 6, 7, 8, 9.
    assert applied == [9, 8, 7, 6, 4, 3, 2, 1, 0]
