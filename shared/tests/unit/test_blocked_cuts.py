"""BlockedCuts: a cut attempt seen waiting on another session's lock excuses that cut only."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest

from cascade.shared.messaging.lock_watch import BlockedCuts, Blockers, LockWatch
from cascade.shared.messaging.metrics import BusMetrics, counter_total

pytestmark = pytest.mark.unit


async def _expired_deadline() -> asyncio.Timeout:
    with suppress(TimeoutError):
        async with asyncio.timeout(0) as deadline:
            await asyncio.sleep(1)  # cut at once: the deadline expires
    assert deadline.expired()
    return deadline


def _watch(blockers: Blockers | None) -> LockWatch:
    watch = LockWatch(sessions=None, pid=1, deadline_at=None)  # type: ignore[arg-type]
    watch.blockers = blockers
    return watch


async def test_a_cut_seen_blocked_is_excused_once_and_counted() -> None:
    metrics = BusMetrics()
    cuts, deadline = BlockedCuts(metrics), await _expired_deadline()
    cuts.record(deadline, _watch(Blockers(sessions=1, oldest_transaction_s=42.0)))

    assert cuts.blocked(deadline)
    assert not cuts.blocked(deadline), "a second judgement of the same cut"
    assert counter_total(metrics.blocked_attempts) == 1


async def test_another_attempts_cut_is_not_excused_by_an_earlier_blocked_one() -> None:
    cuts = BlockedCuts(BusMetrics())
    cuts.record(await _expired_deadline(), _watch(Blockers(1, None)))

    assert not cuts.blocked(await _expired_deadline())


async def test_a_cut_not_seen_blocked_is_not_excused() -> None:
    cuts, deadline = BlockedCuts(BusMetrics()), await _expired_deadline()
    cuts.record(deadline, _watch(None))

    assert not cuts.blocked(deadline)


async def test_an_attempt_that_failed_before_its_deadline_is_not_excused() -> None:
    cuts = BlockedCuts(BusMetrics())
    deadline = asyncio.Timeout(asyncio.get_running_loop().time() + 60)  # not reached
    cuts.record(deadline, _watch(Blockers(1, None)))

    assert not cuts.blocked(deadline)
