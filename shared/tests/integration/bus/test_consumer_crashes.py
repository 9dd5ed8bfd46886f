"""R1, R2 (and R3's guard): a consumer killed at the worst moments loses and doubles nothing.

Protections and the figures their negative controls fail on:
* the inbox dedup (R1): with it off, a crash after the DB commit and before the offset
  commit re-applies the redelivered batch: `duplicated` > 0;
* offsets committed after the DB commit (R2/R3): committing them first and crashing
  before the DB commit skips the batch: `lost` > 0;
* the effects in the consumer's transaction, with the inbox row (R2's "0 phantom"): a
  handler that commits them in a transaction of its own leaves, when the process is killed
  before the consumer's commit, effects with no inbox row: `effects without an inbox row`
  > 0.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from cascade.shared.testing.bus import effects_without_inbox_row, make_steps
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.kafka import create_topics, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
CRASH_RUNS = 5  # K per crash point in the PR tier (reliability matrix, "Sizes")


async def _crash_then_recover(worker: Worker, crash_at: str, runs: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(runs):
        # A random batch of the run: "at random points" of the stream.
        worker.start(crash_at=crash_at, crash_after=rng.randint(1, 4))
        assert worker.wait_crashed() == -9, worker.log_file.read_text()[-2000:]
    worker.start()


@pytest.mark.parametrize("seed", [11])
async def test_killed_after_db_commit_before_offset_commit_nothing_lost_or_doubled(
    seed: int,
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
) -> None:
    # One partition, and offsets committed after every batch: a run resumes exactly at the
    # batch the run before it crashed on, which it skips only if that batch's database
    # commit happened. A crash before it would leave that run nothing to skip.
    events = unique_name("events")
    await create_topics(kafka_bootstrap_servers, [events], partitions=1)
    produced = await produce_envelopes(kafka_bootstrap_servers, events, make_steps(N_EVENTS, 50))
    worker, group = consumer_worker("--commit-interval-s", "0", topic=events)

    await _crash_then_recover(worker, "after_db_commit_before_offset_commit", CRASH_RUNS, seed)
    await wait_all_applied(bus_database, produced)
    await wait_lag_zero(kafka_bootstrap_servers, group, [events])
    worker.stop()

    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    # Every run after a crash found the crashed batch recorded and skipped it: each of the
    # crashes landed between the database commit and the offset commit.
    after_crashes = worker.duplicates_by_run()[1:]
    assert len(after_crashes) == CRASH_RUNS
    assert all(skipped >= 1 for skipped in after_crashes), after_crashes


async def test_negative_control_without_inbox_dedup_the_crash_doubles_effects(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await produce_envelopes(
        kafka_bootstrap_servers, bus_topics[0], make_steps(N_EVENTS, 50)
    )
    worker, group = consumer_worker("--no-dedup")

    await _crash_then_recover(worker, "after_db_commit_before_offset_commit", 1, seed=5)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]])
    worker.stop()

    report = await history(bus_database, produced)
    assert report.duplicated > 0, f"protection: inbox dedup; figure: duplicated; {report}"


@pytest.mark.parametrize("crash_after", [1, 3])
async def test_killed_mid_batch_before_db_commit_leaves_no_partial_effects(
    crash_after: int,
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await produce_envelopes(
        kafka_bootstrap_servers, bus_topics[0], make_steps(N_EVENTS, 50)
    )
    worker, group = consumer_worker()

    worker.start(crash_at="in_handler_before_db_commit", crash_after=crash_after)
    assert worker.wait_crashed() == -9
    worker.start()
    await wait_all_applied(bus_database, produced)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]])
    worker.stop()

    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert await effects_without_inbox_row(bus_database, group) == 0


async def test_negative_control_effects_committed_apart_from_the_inbox_are_phantoms(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    await produce_envelopes(kafka_bootstrap_servers, bus_topics[0], make_steps(N_EVENTS, 50))
    worker, group = consumer_worker("--effects-apart")

    worker.start(crash_at="in_handler_before_db_commit", crash_after=2)
    assert worker.wait_crashed() == -9

    phantoms = await effects_without_inbox_row(bus_database, group)
    assert phantoms > 0, "protection: effects in the consumer's transaction; figure: phantoms"


async def test_negative_control_committing_offsets_before_the_db_loses_events(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await produce_envelopes(
        kafka_bootstrap_servers, bus_topics[0], make_steps(N_EVENTS, 50)
    )
    worker, group = consumer_worker("--offsets-first")

    worker.start(crash_at="in_handler_before_db_commit", crash_after=2)
    assert worker.wait_crashed() == -9
    worker.start()
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]])
    worker.stop()

    report = await history(bus_database, produced)
    assert report.lost > 0, f"protection: offsets after the DB commit; figure: lost; {report}"
