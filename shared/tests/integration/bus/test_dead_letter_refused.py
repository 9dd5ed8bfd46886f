"""R7 and R8 when the broker refuses dead letters: a record not parked is never skipped.

The consumer's dead-letter topic does not exist at first (deleted by mistake, or not yet
created: the broker creates no topic by itself), so every dead letter times out. Among
1,000 good events on one partition sits one record to park:
- a bad record (undecodable), parked straight from the batch;
- or an event its handler keeps failing on, parked by the one-by-one fallback after
  max_attempts.
While its dead letter is refused, the consumer retries it in place: the group's committed
offset stays at or below the record, and the consumer stays in its group. Once the topic
exists: exactly one dead letter, with the record's provenance; every other event applied
exactly once and in order; lag 0.

Negative control, protection switched off: a dead letter the broker refuses stalls the
partition (here a publish whose failure is swallowed, so the record is skipped as if
parked); the figure: records neither applied nor dead-lettered > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import GroupCoordinatorNotAvailableError
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.admin import ensure_topics, new_topic
from cascade.shared.messaging.consumer import BatchHandler, ConsumerConfig
from cascade.shared.messaging.dead_letters import DeadLetter, DeadLetterPublisher
from cascade.shared.messaging.metrics import BusMetrics, counter_total
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.replay import DeadLetterRecord, read_dead_letters
from cascade.shared.messaging.topology import dead_letter_topic, topic
from cascade.shared.testing.bus import make_steps, record_effects
from cascade.shared.testing.harness import (
    assert_exactly_once_in_order,
    consumer_in_this_process,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import committed_offsets, create_topics, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_GOOD = 1000
AT = 500  # where the record to park sits in the stream
REFUSALS = 3  # dead letters refused before the topic is created
DEAD_LETTER_TIMEOUT_MS = 2_000  # how long a dead letter waits for its topic to appear
DEADLINE_S = 60.0


class HandlerRefusal(Exception):
    """The test handler's permanent failure on one event."""


@dataclass(frozen=True)
class Outcome:
    offset_to_park: int
    committed_while_refused: int
    refusals: int
    dead_letters: list[DeadLetterRecord]
    rebalances: float


async def _produce(bootstrap: str, topic_name: str, records: Sequence[tuple[bytes, bytes]]) -> int:
    """Sends (key, value) records in order to one partition; returns the offset of AT."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        deliveries = [await producer.send(topic_name, v, key=k) for k, v in records]
        offsets = [(await delivery).offset for delivery in deliveries]
    finally:
        await producer.stop()
    return int(offsets[AT])


def _failing_on(event_id: str | None) -> BatchHandler:
    async def handle(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        if any(event.envelope.id == event_id for event in events):
            raise HandlerRefusal("this event is refused at every attempt")
        await record_effects(session, events, "refused-dlt")

    return handle


async def _committed(bootstrap: str, group: str) -> int:
    """The group's committed offset on the partition; -1 while it has none."""
    with suppress(GroupCoordinatorNotAvailableError):  # the group is still being formed
        return max((await committed_offsets(bootstrap, group)).values(), default=-1)
    return -1


async def _create_dead_letter_topic(bootstrap: str, name: str) -> None:
    spec = replace(topic(dead_letter_topic("accounts")), name=name)
    await ensure_topics(bootstrap, [new_topic(spec, replication_factor=1)])


async def _park_while_refused(database_url: str, bootstrap: str, *, bad_record: bool) -> Outcome:
    events_topic, dlt, group = unique_name("refused"), unique_name("refused-dlt"), unique_name("g")
    await create_topics(bootstrap, [events_topic], partitions=1)
    good = make_steps(N_GOOD, 10)
    records = [(e.key, e.to_bytes()) for e in good]
    if bad_record:
        records.insert(AT, (b"ACC-00000", b'{"bad'))
    offset_to_park = await _produce(bootstrap, events_topic, records)
    failing = None if bad_record else good[AT]
    config = ConsumerConfig(group, (events_topic,), dlt, max_records=100, max_attempts=3)
    metrics = BusMetrics()

    def refusals() -> int:
        return sum(1 for line in logs if line["event"] == "consumer.dead_letter_failed")

    async def stuck_or_past() -> bool:  # the control moves past without any refusal
        return refusals() >= REFUSALS or await _committed(bootstrap, group) > offset_to_park

    with capture_logs() as logs:
        async with consumer_in_this_process(
            database_url,
            bootstrap,
            config,
            _failing_on(failing.id if failing else None),
            metrics=metrics,
            dead_letter_timeout_ms=DEAD_LETTER_TIMEOUT_MS,
        ):
            await wait_until_async(stuck_or_past, DEADLINE_S, "refused dead letters", interval=0.2)
            committed = await _committed(bootstrap, group)
            await _create_dead_letter_topic(bootstrap, dlt)
            expected = [
                Produced(e.id, e.subject, int(e.data["seq"])) for e in good if e is not failing
            ]
            await wait_all_applied(database_url, expected, deadline_s=DEADLINE_S)
            await wait_lag_zero(bootstrap, group, [events_topic], deadline_s=DEADLINE_S)
    await assert_exactly_once_in_order(database_url, expected)
    return Outcome(
        offset_to_park=offset_to_park,
        committed_while_refused=committed,
        refusals=refusals(),
        dead_letters=await read_dead_letters(bootstrap, "bus-tests", dead_letter_topic=dlt),
        rebalances=counter_total(metrics.rebalances),
    )


@pytest.mark.parametrize("bad_record", [True, False], ids=["bad-record", "failing-handler"])
async def test_a_refused_dead_letter_stalls_its_record_until_the_broker_takes_it(
    bus_database: str, kafka_bootstrap_servers: str, bad_record: bool
) -> None:
    outcome = await _park_while_refused(
        bus_database, kafka_bootstrap_servers, bad_record=bad_record
    )

    assert outcome.refusals >= REFUSALS
    assert outcome.committed_while_refused <= outcome.offset_to_park, "skipped while refused"
    assert outcome.rebalances == 0, "the consumer left its group"
    assert len(outcome.dead_letters) == 1, [letter.headers for letter in outcome.dead_letters]
    letter = outcome.dead_letters[0]
    assert letter.header("dlt-original-offset") == str(outcome.offset_to_park)
    assert letter.header("dlt-reason") == ("undecodable" if bad_record else "handler_failed")
    assert letter.header("dlt-attempts") == ("1" if bad_record else "3")


@pytest.mark.parametrize("bad_record", [True, False], ids=["bad-record", "failing-handler"])
async def test_negative_control_skipping_a_refused_dead_letter_loses_the_record(
    bus_database: str,
    kafka_bootstrap_servers: str,
    bad_record: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish = DeadLetterPublisher.publish

    async def publish_or_skip(self: DeadLetterPublisher, letters: list[DeadLetter]) -> None:
        with suppress(Exception):  # the bug: a refusal taken as parked
            await publish(self, letters)

    monkeypatch.setattr(DeadLetterPublisher, "publish", publish_or_skip)
    outcome = await _park_while_refused(
        bus_database, kafka_bootstrap_servers, bad_record=bad_record
    )

    unaccounted = 1 - len(outcome.dead_letters)
    assert unaccounted > 0, (
        "protection: a refused dead letter stalls its partition; "
        f"figure: records neither applied nor dead-lettered = {unaccounted}"
    )
