"""R5: consumers joining and leaving one group under load lose and double nothing.

Three consumer processes share a group while events keep arriving for 60 s; every few
seconds one leaves (SIGTERM, or SIGKILL now and then) or joins. Commits that fail during
the rebalances are tolerated: the records are redelivered to the partition's new owner.
So that some commits surely fail, each member's coordinator also refuses every 5th offset
commit with RebalanceInProgress (or, one time in four, UnknownMemberId: testing.commit_faults),
and the test checks that refusals happened, that the members logged the CommitFailedError
and carried on: no member may end unless the storm stopped it, and a member stopped with
SIGTERM must exit cleanly.

Protection: the inbox dedup. Negative control: with it off, redelivery re-applies batches
whose offsets were not committed: `duplicated` > 0. So that the control fails every run and
not only when a rebalance happens to land inside a batch, one member of its storm is also
killed once between a database commit and its offset commit.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable

import pytest

from cascade.shared.infra.processes import kill9
from cascade.shared.testing.bus import make_steps
from cascade.shared.testing.commit_faults import REFUSED
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
REFUSED_COMMITS = ("--refuse-commits-every", "5")


async def _steady_load(bootstrap: str, topic: str, deadline: float) -> list[Produced]:
    produced: list[Produced] = []
    start = 0
    while time.monotonic() < deadline:
        steps = make_steps(RATE_PER_SECOND // 4, 30, start=start)
        produced += await produce_envelopes(bootstrap, topic, steps)
        start += len(steps)
        await asyncio.sleep(0.25)  # pacing the load generator, not synchronisation
    return produced


class Storm:
    """Every few seconds one member leaves (SIGTERM, or SIGKILL now and then) or rejoins.

    The first `spare` members are never stopped by the storm (they crash by themselves);
    when they are down, the storm restarts them. Any other member found down that the
    storm did not stop ended on its own: listed in `ended_by_themselves`, as are members
    that did not stop cleanly on SIGTERM.
    """

    def __init__(self, members: list[Worker], seed: int, spare: int = 0) -> None:
        self.members, self.spare = members, spare
        self.ended_by_themselves: list[str] = []
        self._rng = random.Random(seed)
        self._stopped: set[int] = set()  # indexes of members the storm took down

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(self._rng.uniform(3.0, 7.0))  # the churn's rhythm
            self.note_members_down()
            for member in self.members[: self.spare]:
                if not member.running():
                    member.start()
            index = self._rng.randrange(self.spare, len(self.members))
            if not self.members[index].running():
                self.restart(index)
            elif sum(m.running() for m in self.members) > 1:
                await self._take_down(index)

    def note_members_down(self) -> None:
        """Lists the members down that the storm did not take down."""
        for index, member in enumerate(self.members[self.spare :], start=self.spare):
            if not member.running() and index not in self._stopped:
                code = member.process.returncode if member.process else None
                self.ended_by_themselves.append(f"member {index} exited with {code}")
                self._stopped.add(index)  # reported once

    def restart(self, index: int) -> None:
        self._stopped.discard(index)
        self.members[index].start()

    async def _take_down(self, index: int) -> None:
        member = self.members[index]
        self._stopped.add(index)
        if self._rng.random() < 0.25:
            kill9(member.process.pid)  # type: ignore[union-attr]
            return
        await asyncio.to_thread(member.stop)
        if not _stopped_cleanly(member):
            code = member.process.returncode if member.process else None
            self.ended_by_themselves.append(f"member {index} exited with {code} on SIGTERM")


def _stopped_cleanly(member: Worker) -> bool:
    """Exit code 0, or killed by the SIGTERM itself while still starting (before the
    worker installs its handler, so before it consumed anything). An unhandled exception
    exits with 1; SIGKILL after the grace period, -9."""
    return member.process is not None and member.process.returncode in (0, -signal.SIGTERM)


async def _run_storm(
    workers: Callable[..., Worker],
    database: str,
    bootstrap: str,
    topics: tuple[str, str],
    *extra: str,
    seconds: float = STORM_SECONDS,
    crash_one: bool = False,
) -> tuple[list[Produced], str, Storm]:
    group = unique_name("group")
    args = ["--db", database, "--bootstrap", bootstrap, "--group", group, "--topic", topics[0]]
    args += ["--dead-letter-topic", topics[1], "--max-records", "100", *REFUSED_COMMITS, *extra]
    members = [workers("consume", *args) for _ in range(3)]
    if crash_one:
        members[0].start(crash_at="after_db_commit_before_offset_commit", crash_after=5)
    for member in members[1 if crash_one else 0 :]:
        member.start()
    deadline = time.monotonic() + seconds
    storm = Storm(members, seed=7, spare=1 if crash_one else 0)
    produced, _ = await asyncio.gather(
        _steady_load(bootstrap, topics[0], deadline), storm.run(deadline)
    )
    storm.note_members_down()
    for index, member in enumerate(members):  # after the storm: everyone back
        if not member.running():
            storm.restart(index)
    return produced, group, storm


async def test_a_rebalance_storm_loses_and_doubles_nothing_and_lag_returns_to_zero(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, group, storm = await _run_storm(
        workers, bus_database, kafka_bootstrap_servers, bus_topics
    )

    await wait_all_applied(bus_database, produced, deadline_s=60)
    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=60)
    storm.note_members_down()
    for member in storm.members:
        member.stop()

    report = await history(bus_database, produced)
    assert len(produced) >= 1000
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert sum(member.runs for member in storm.members) > 3  # they really left and rejoined
    assert storm.ended_by_themselves == []
    assert all(_stopped_cleanly(member) for member in storm.members), [
        member.process.returncode for member in storm.members if member.process
    ]
    # Commits were refused, and reached the consumers as CommitFailedError, tolerated.
    assert sum(_logged(member, REFUSED) for member in storm.members) > 0
    assert (
        sum(
            _logged(member, "consumer.commit_failed", "CommitFailedError")
            for member in storm.members
        )
        > 0
    )


def _logged(member: Worker, *words: str) -> int:
    """Counts the lines of the member's log (all its runs) that hold every one of `words`."""
    lines = member.log_file.read_text(errors="replace").splitlines()
    return sum(all(word in line for word in words) for line in lines)


async def test_negative_control_without_inbox_dedup_the_storm_doubles_effects(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, group, storm = await _run_storm(
        workers,
        bus_database,
        kafka_bootstrap_servers,
        bus_topics,
        "--no-dedup",
        seconds=25,
        crash_one=True,
    )

    await wait_lag_zero(kafka_bootstrap_servers, group, [bus_topics[0]], deadline_s=60)
    for member in storm.members:
        member.stop()

    report = await history(bus_database, produced)
    assert report.duplicated > 0, f"protection: inbox dedup; figure: duplicated; {report}"
