"""R14, a database that stops answering: a frozen database is not a slow event.

Every PostgreSQL process is frozen (SIGSTOP) for 30 s, as with a hung host, a stalled disk
or a network partition: connections stay open, and statements neither finish nor fail.
`max_poll_interval_ms` is lowered to 15 s, the batch timeout to 5 s and the attempts per
event to 3, so the freeze outlasts the interval and the one-by-one fallback's three
attempts. A consumer on a private PostgreSQL has applied 100 events first.
* Mid-stream: 400 more events arrive during the freeze. Pass: after the thaw every event
  is applied within 60 s, exactly once and in order, the group's lag is 0, no event is
  dead-lettered and the consumer never left its group. Its log must show an attempt cut
  during the freeze, so the freeze is known to have reached it.
* During the one-by-one fallback: one event stalls its handler at every attempt (15 s,
  cut at 5 s), and the freeze starts at the event's first attempt of its own. Pass: the
  event is dead-lettered once, after its handler ran at all three attempts (the batch's
  attempt, then three of its own: four runs), every other event applied once and in
  order, and the consumer never left its group.

Protections, and the negative controls that switch each off:
* an attempt cut by the batch timeout counts against the events only if the database
  commits a probe; otherwise it is retried without blame. Switched off (the database
  taken as answering), the figures that must fail are, mid-stream, the dead letters (> 0:
  good events parked while the database was away) and, in the fallback, the handler's
  runs of the stalled event (< 4: attempts that never reached it counted against it);
* the polls while a batch waits to be retried (`stay_in_group`). Switched off, the figure
  that must fail is the rebalances (> 0): attempts and probes add up past the interval;
* dropping the connection of an attempt the batch timeout cuts (here while the handler
  stalls, the database frozen meanwhile). Switched off, the session rolls back over it,
  which waits for the thaw without a poll: the figure that must fail is the rebalances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from cascade.shared.infra.postgres import EmbeddedPostgres
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging import availability
from cascade.shared.messaging import batch as batch_module
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

BEFORE, DURING = 100, 400  # events applied before the freeze, and arriving during it
FREEZE_S = 30.0
MAX_POLL_INTERVAL_S = 15
STALLED = ("ACC-00000", 12)  # key and seq of the 121st event: in the first batch after BEFORE
STALL_S = 15.0
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


class StallingHandler:
    """Records effects; stalls at every attempt that includes the STALLED event."""

    def __init__(self) -> None:
        self.stalls = 0

    async def __call__(self, session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        if any((e.envelope.subject, getattr(e.payload, "seq", None)) == STALLED for e in events):
            self.stalls += 1
            await asyncio.sleep(STALL_S)  # the injected stall itself
        await record_effects(session, events, "frozen-db-test")


async def _record_effects(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
    await record_effects(session, events, "frozen-db-test")


async def _freeze_while_consuming(
    server: EmbeddedPostgres,
    database_url: str,
    bootstrap: str,
    stalling: StallingHandler | None = None,
    *,
    recovery: bool = True,
) -> Outcome:
    """Freezes the database mid-stream, or, with a `stalling` handler, at the stalled
    event's first attempt of its own. With `recovery`, waits for every event after the
    thaw and checks that nothing was lost, doubled or reordered (a negative control,
    which parks events, needs neither)."""
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
    metrics = BusMetrics()
    recovered_s: float | None = None
    async with consumer_in_this_process(
        database_url,
        bootstrap,
        config,
        stalling or _record_effects,
        metrics=metrics,
        max_poll_interval_ms=MAX_POLL_INTERVAL_S * 1000,
    ):
        produced = await produce_envelopes(bootstrap, topic, steps[:BEFORE])
        await wait_all_applied(database_url, produced, deadline_s=60)
        if stalling is not None:
            produced += await produce_envelopes(bootstrap, topic, steps[BEFORE:])

            async def own_attempt() -> bool:  # the batch's attempt, then the event's first
                return stalling.stalls >= 2

            await wait_until_async(own_attempt, 60, "the stalled event's own attempt")
        with capture_logs() as logs, server.frozen():
            if stalling is None:
                produced += await produce_envelopes(bootstrap, topic, steps[BEFORE:])
            await asyncio.sleep(FREEZE_S)  # the fault itself: the database away this long
        expected = [p for p in produced if stalling is None or (p.key, p.seq) != STALLED]
        if recovery:
            recovered_s = await applied_within(database_url, expected, RECOVERY_S)
        if recovered_s is not None:
            await wait_lag_zero(bootstrap, config.group_id, config.topics, deadline_s=60)
    if recovered_s is not None:
        await assert_exactly_once_in_order(database_url, expected)
    return Outcome(
        recovered_s=recovered_s,
        dead_letters=await record_count(bootstrap, [dead_letter_topic]),
        rebalances=counter_total(metrics.rebalances),
        cut_while_frozen=sum(1 for line in logs if line["event"] in ATTEMPT_CUT),
    )


@pytest.fixture
def probe_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative controls' probe: the database is taken as answering, whatever it does."""

    async def answers(*_: object) -> bool:
        return True

    monkeypatch.setattr(availability, "database_answers", answers)


async def test_a_frozen_database_parks_no_event_and_keeps_the_consumer_in_its_group(
    private_postgres: tuple[EmbeddedPostgres, str], kafka_bootstrap_servers: str
) -> None:
    outcome = await _freeze_while_consuming(*private_postgres, kafka_bootstrap_servers)

    assert outcome.cut_while_frozen > 0, "the freeze never reached the consumer"
    assert outcome.recovered_s is not None, f"not all applied {RECOVERY_S}s after the thaw"
    assert outcome.dead_letters == 0, "good events were parked while the database was away"
    assert outcome.rebalances == 0, "the consumer left its group"


@pytest.mark.usefixtures("probe_switched_off")
async def test_negative_control_without_the_probe_a_frozen_database_parks_good_events(
    private_postgres: tuple[EmbeddedPostgres, str], kafka_bootstrap_servers: str
) -> None:
    outcome = await _freeze_while_consuming(
        *private_postgres, kafka_bootstrap_servers, recovery=False
    )

    assert outcome.dead_letters > 0, "protection: the database probe; figure: dead letters"


async def test_negative_control_without_polls_while_waiting_the_consumer_is_evicted(
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_poll(*_: object) -> None:
        pass

    monkeypatch.setattr(batch_module, "stay_in_group", no_poll)
    outcome = await _freeze_while_consuming(
        *private_postgres, kafka_bootstrap_servers, recovery=False
    )

    assert outcome.rebalances > 0, "protection: stay_in_group; figure: rebalances"


async def test_a_freeze_during_the_fallback_counts_no_attempt_against_the_event(
    private_postgres: tuple[EmbeddedPostgres, str], kafka_bootstrap_servers: str
) -> None:
    stalling = StallingHandler()
    outcome = await _freeze_while_consuming(*private_postgres, kafka_bootstrap_servers, stalling)

    # Frozen from the event's first attempt of its own, which the batch timeout then cuts:
    # the consumer must neither hang over that attempt's connection nor leave its group.
    assert outcome.rebalances == 0, "the consumer left its group"
    assert outcome.cut_while_frozen > 0, "no attempt was cut while the database was frozen"
    assert outcome.recovered_s is not None, f"not all applied {RECOVERY_S}s after the thaw"
    assert outcome.dead_letters == 1
    assert stalling.stalls == 4, "attempts were counted that never reached the handler"


@pytest.mark.usefixtures("probe_switched_off")
async def test_negative_control_without_the_probe_attempts_during_a_freeze_count(
    private_postgres: tuple[EmbeddedPostgres, str], kafka_bootstrap_servers: str
) -> None:
    stalling = StallingHandler()
    await _freeze_while_consuming(
        *private_postgres, kafka_bootstrap_servers, stalling, recovery=False
    )

    assert stalling.stalls < 4, "protection: the database probe; figure: the handler's runs"


async def test_negative_control_rolling_back_a_cut_attempt_hangs_and_evicts_the_consumer(
    private_postgres: tuple[EmbeddedPostgres, str],
    kafka_bootstrap_servers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def keep_connection(_: AsyncSession) -> None:
        pass  # the session then rolls back over the frozen connection, as it did before

    monkeypatch.setattr(AsyncSession, "invalidate", keep_connection)
    outcome = await _freeze_while_consuming(
        *private_postgres, kafka_bootstrap_servers, StallingHandler(), recovery=False
    )

    assert outcome.rebalances > 0, "protection: dropping a cut connection; figure: rebalances"
