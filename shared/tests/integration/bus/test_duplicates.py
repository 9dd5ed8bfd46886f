"""R4: duplicated events and a full replay of the topic change nothing.

Protection: the inbox dedup. Negative control: with it off, the duplicated deliveries are
applied again: `duplicated` > 0.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cascade.shared.testing.bus import make_steps, read_effects
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import rewind_group

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000


async def _produce_with_copies(bootstrap: str, topic: str) -> list[Produced]:
    steps = make_steps(N_EVENTS, 40)
    produced = await produce_envelopes(bootstrap, topic, steps, copies=2)
    await produce_envelopes(bootstrap, topic, steps[: N_EVENTS // 4])  # a third copy of some
    return produced


async def test_duplicates_and_a_full_replay_add_no_effect(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await _produce_with_copies(kafka_bootstrap_servers, bus_topics[0])
    worker, group = consumer_worker(max_records=200)

    worker.start()
    await wait_all_applied(bus_database, produced)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]])
    worker.stop()
    effects_before = await read_effects(bus_database)

    await rewind_group(kafka_bootstrap_servers, group, [bus_topics[0]])
    worker.start()
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=120)
    worker.stop()

    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert await read_effects(bus_database) == effects_before  # 0 new rows after the replay
    # Every copy and the whole replay were recognised: 2 x N + N/4 duplicates at least.
    assert worker.duplicates_skipped() >= N_EVENTS + N_EVENTS // 4 + N_EVENTS


async def test_negative_control_without_inbox_dedup_duplicates_are_applied(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await _produce_with_copies(kafka_bootstrap_servers, bus_topics[0])
    worker, group = consumer_worker("--no-dedup", max_records=200)

    worker.start()
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=120)
    worker.stop()

    report = await history(bus_database, produced)
    assert report.duplicated > 0, f"protection: inbox dedup; figure: duplicated; {report}"
