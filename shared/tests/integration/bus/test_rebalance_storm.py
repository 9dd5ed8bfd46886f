"""R5: consumers joining and leaving one group under load lose and double nothing.

Three consumer processes share a group while events keep arriving for 60 s; every few
seconds one leaves (SIGTERM, or SIGKILL now and then) or joins. Commits that fail during
the rebalances are tolerated: the records are redelivered to the partition's new owner.

Protection: the inbox dedup. Negative control: with it off, redelivery re-applies batches
whose offsets were not committed: `duplicated` > 0. So that the control fails every run and
not only when a rebalance happens to land inside a batch, one member of its storm is also
killed once between a database commit and its offset commit.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from cascade.shared.infra.processes import kill9
from cascade.shared.testing.bus import make_steps
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORM_SECONDS = 60.0
RATE_PER_SECOND = 40  # 2,400 events over the storm


async def _steady_load(bootstrap: str, topic: str, deadline: float) -> list[Produced]:
    produced: list[Produced] = []
    start = 0
    while time.monotonic() < deadline:
        steps = make_steps(RATE_PER_SECOND // 4, 30, start=start)
        produced += await produce_envelopes(bootstrap, topic, steps)
        start += len(steps)
        await asyncio.sleep(0.25)  # pacing the load generator, not synchronisation
    return produced


async def _storm(members: list[Worker], deadline: float, seed: int, spare: int = 0) -> None:
    """Every few seconds one member leaves (SIGTERM, or SIGKILL now and then) or rejoins.

    The first `spare` members are never stopped by the storm (they crash by themselves);
    when they are down, the storm restarts them.
    """
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(3.0, 7.0))  # the churn's rhythm, not synchronisation
        for member in members[:spare]:
            if not _running(member):
                member.start()
        member = rng.choice(members[spare:])
        if not _running(member):
            member.start()
        elif sum(_running(m) for m in members) > 1:
            if rng.random() < 0.25:
                kill9(member.process.pid)  # type: ignore[union-attr]
            else:
                await asyncio.to_thread(member.stop)


def _running(member: Worker) -> bool:
    return member.process is not None and member.process.poll() is None


async def _run_storm(
    workers: Callable[..., Worker],
    database: str,
    bootstrap: str,
    topics: tuple[str, str],
    *extra: str,
    seconds: float = STORM_SECONDS,
    crash_one: bool = False,
) -> tuple[list[Produced], str, list[Worker]]:
    group = unique_name("group")
    args = ["--db", database, "--bootstrap", bootstrap, "--group", group, "--topic", topics[0]]
    args += ["--dead-letter-topic", topics[1], "--max-records", "100", *extra]
    members = [workers("consume", *args) for _ in range(3)]
    if crash_one:
        members[0].start(crash_at="after_db_commit_before_offset_commit", crash_after=5)
    for member in members[1 if crash_one else 0 :]:
        member.start()
    deadline = time.monotonic() + seconds
    produced, _ = await asyncio.gather(
        _steady_load(bootstrap, topics[0], deadline),
        _storm(members, deadline, seed=7, spare=1 if crash_one else 0),
    )
    for member in members:  # after the storm: everyone back
        if not _running(member):
            member.start()
    return produced, group, members


async def test_a_rebalance_storm_loses_and_doubles_nothing_and_lag_returns_to_zero(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, group, members = await _run_storm(
        workers, bus_database, kafka_bootstrap_servers, bus_topics
    )

    await wait_all_applied(bus_database, produced, deadline_s=60)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=60)
    for member in members:
        member.stop()

    report = await history(bus_database, produced)
    assert len(produced) >= 1000
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert sum(member.runs for member in members) > 3  # members really left and rejoined


async def test_negative_control_without_inbox_dedup_the_storm_doubles_effects(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, group, members = await _run_storm(
        workers,
        bus_database,
        kafka_bootstrap_servers,
        bus_topics,
        "--no-dedup",
        seconds=40,
        crash_one=True,
    )

    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=60)
    for member in members:
        member.stop()

    report = await history(bus_database, produced)
    assert report.duplicated > 0, f"protection: inbox dedup; figure: duplicated; {report}"
