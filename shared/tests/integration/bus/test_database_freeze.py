"""R14, a database that stops answering: a frozen database is not a slow event.

Every PostgreSQL process is frozen (SIGSTOP) for 30 s, as with a hung host, a storage
stall or a network partition: connections stay open, and statements neither finish nor
fail. `max_poll_interval_ms` is lowered to 10 s, the batch timeout to 5 s and the
attempts per event to 3, so the freeze outlasts both the interval and the one-by-one
fallback's three attempts. A consumer on a private PostgreSQL has applied 100 events when
the freeze starts; 400 more arrive during it.

Pass: after the thaw, every event is applied within 60 s, exactly once and in order, the
group's lag is 0, no event is dead-lettered and the consumer never left its group. The
consumer's log must show an attempt cut by the batch timeout during the freeze, so the
freeze is known to have reached it.

Protections, and the negative controls that switch each off:
* an attempt cut by the batch timeout counts against the event only if the database
  answers a probe; otherwise the database is away, and the batch is retried until it
  answers. Switched off (the database taken as answering), the figure that must fail is
  the dead letters, > 0: good events parked while the database was away;
* the polls while the batch waits to be retried (`stay_in_group`). Switched off, the
  figure that must fail is the rebalances, > 0: attempts and probes add up past the poll
  interval, and the group evicts the consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from cascade.shared.infra.postgres import EmbeddedPostgres
from cascade.shared.messaging import availability
from cascade.shared.messaging import batch as batch_module
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.metrics import BusMetrics, counter_total
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.bus import make_steps, record_effects
from cascade.shared.testing.harness import (
    consumer_in_this_process,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.kafka import create_topics, record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, DURING = 100, 400  # events applied before the freeze, and arriving during it
FREEZE_S = 30.0
MAX_POLL_INTERVAL_S = 10
RECOVERY_S = 60.0
# What the consumer logs when the batch timeout cuts an attempt: blamed on the database,
# or on the batch or the event (the negative control).
ATTEMPT_CUT = ("consumer.database_not_answering", "consumer.batch_timed_out")


@dataclass(frozen=True)
class Outcome:
    recovered_s: float | None  # from the thaw until every event is applied; None: not by then
    dead_letters: int
    rebalances: float
    cut_while_frozen: int  # attempts the batch timeout cut during the freeze


async def _freeze_while_consuming(
    server: EmbeddedPostgres, database_url: str, bootstrap: str
) -> Outcome:
    topic, dead_letter_topic = unique_name("frozen-db"), unique_name("frozen-db-dlq")
    await create_topics(bootstrap, [topic, dead_letter_topic], partitions=1)
    steps = make_steps(BEFORE + DURING, 10)
    config = ConsumerConfig(
        unique_name("frozen-db"),
        (topic,),
        dead_letter_topic,
        max_records=50,
        max_attempts=3,
        batch_timeout_s=5,
    )

    async def handler(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        await record_effects(session, events, "frozen-db-test")

    metrics = BusMetrics()
    recovered_s: float | None = None
    async with consumer_in_this_process(
        database_url,
        bootstrap,
        config,
        handler,
        metrics=metrics,
        max_poll_interval_ms=MAX_POLL_INTERVAL_S * 1000,
    ):
        produced = await produce_envelopes(bootstrap, topic, steps[:BEFORE])
        await wait_all_applied(database_url, produced, deadline_s=60)
        with capture_logs() as logs, server.frozen():
            produced += await produce_envelopes(bootstrap, topic, steps[BEFORE:])
            await asyncio.sleep(FREEZE_S)  # the fault itself: the database away this long
        thawed = time.monotonic()
        with suppress(TimeoutError):  # not all applied: the outcome says so
            await wait_all_applied(database_url, produced, deadline_s=RECOVERY_S)
            recovered_s = time.monotonic() - thawed
        if recovered_s is not None:
            await wait_lag_zero(bootstrap, config.group_id, config.topics, deadline_s=60)
    report = await history(database_url, produced)
    if recovered_s is not None:
        assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
        assert report.order_violations == 0, str(report)
    return Outcome(
        recovered_s=recovered_s,
        dead_letters=await record_count(bootstrap, [dead_letter_topic]),
        rebalances=counter_total(metrics.rebalances),
        cut_while_frozen=sum(1 for line in logs if line["event"] in ATTEMPT_CUT),
    )


async def test_a_frozen_database_parks_no_event_and_keeps_the_consumer_in_its_group(
    private_postgres: tuple[EmbeddedPostgres, str], kafka_bootstrap_servers: str
) -> None:
    outcome = await _freeze_while_consuming(*private_postgres, kafka_bootstrap_servers)

    assert outcome.cut_while_frozen > 0, "the freeze never reached the consumer"
    assert outcome.recovered_s is not None, f"not all applied {RECOVERY_S}s after the thaw"
    assert outcome.dead_letters == 0, "good events were parked while the database was away"
    assert outcome.rebalances == 0, "the consumer left its group"


async def test_negative_control_without_the_probe_a_frozen_database_parks_good_events(
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answers(*_: object) -> bool:
        return True

    monkeypatch.setattr(availability, "database_answers", answers)
    outcome = await _freeze_while_consuming(*private_postgres, kafka_bootstrap_servers)

    assert outcome.dead_letters > 0, "protection: the database probe; figure: dead letters"


async def test_negative_control_without_polls_while_waiting_the_consumer_is_evicted(
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_poll(*_: object) -> None:
        pass

    monkeypatch.setattr(batch_module, "stay_in_group", no_poll)
    outcome = await _freeze_while_consuming(*private_postgres, kafka_bootstrap_servers)

    assert outcome.rebalances > 0, "protection: stay_in_group; figure: rebalances"
