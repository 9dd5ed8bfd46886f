"""The relay's housekeeping: when it prunes the outbox, and how much per round.

The prune's plan depends on statistics: on an outbox not yet analysed, the planner walks
the primary key filtering on age, and with nothing expired it reads every row, every
round. So housekeeping asks first whether the row with the lowest id has expired, and
issues no delete while it has not. Checked on the statements sent, and with a retention
that has passed, where the same rows must go.

A prune statement deletes at most PRUNE_BATCH_ROWS. One per round capped pruning at 1,000
rows/s, less than the bus publishes: a round now deletes batch after batch, up to
PRUNE_BATCHES. The tests shrink both so that a few hundred rows make several batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.messaging import outbox_upkeep
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.outbox_upkeep import prune_and_measure
from cascade.shared.testing.bus import OUTBOX, make_steps
from cascade.shared.testing.statements import statements_sent

pytestmark = pytest.mark.integration

N_EVENTS = 300


@pytest.fixture
async def published_outbox(bus_database: str) -> AsyncIterator[AsyncEngine]:
    """An outbox of N_EVENTS rows, all published (none pending), and its engine."""
    engine = create_async_engine(bus_database, poolclass=NullPool)
    async with async_sessionmaker(engine)() as session, session.begin():
        await add_to_outbox(session, OUTBOX, [("topic", e) for e in make_steps(N_EVENTS, 30)])
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM outbox_pending"))
    yield engine
    await engine.dispose()


async def _housekeeping(
    engine: AsyncEngine, retention: timedelta, stop: asyncio.Event | None = None
) -> tuple[list[str], int]:
    """Runs one housekeeping round; returns the statements it sent and the rows left.

    Also checks that the round reports the rows it deleted.
    """
    before = await _rows(engine)
    with statements_sent(engine) as sent:
        async with engine.connect() as connection:
            pruned = await prune_and_measure(connection, OUTBOX, retention, BusMetrics(), stop)
    left = await _rows(engine)
    assert pruned == before - left
    return sent, left


async def _rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM outbox_message")) or 0)


def _deletes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("DELETE FROM OUTBOX_MESSAGE")]


async def test_housekeeping_sends_no_delete_while_the_oldest_row_is_within_retention(
    published_outbox: AsyncEngine,
) -> None:
    sent, left = await _housekeeping(published_outbox, timedelta(days=7))

    assert _deletes(sent) == []
    assert left == N_EVENTS


@pytest.mark.parametrize(
    ("batch_rows", "batches", "deletes", "rows_left"),
    [
        # The control for the test above: the same outbox, a retention already passed.
        # The delete is sent and removes every row, so a delete sent above would be seen.
        (10_000, 20, [1, 0], [0, 0]),
        # Batch after batch in one round: 70, 70, 70, 70 and the last 20. One statement per
        # round, as before, would have left 230.
        (70, 20, [5, 0], [0, 0]),
        # Bounded, so that a relay asked to stop does not wait for a whole backlog to go;
        # the next round goes on.
        (70, 2, [2, 2], [160, 20]),
    ],
)
async def test_rounds_past_retention_prune_in_batches_up_to_their_bound(
    published_outbox: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    batch_rows: int,
    batches: int,
    deletes: list[int],
    rows_left: list[int],
) -> None:
    monkeypatch.setattr(outbox_upkeep, "PRUNE_BATCH_ROWS", batch_rows)
    monkeypatch.setattr(outbox_upkeep, "PRUNE_BATCHES", batches)

    rounds = [await _housekeeping(published_outbox, timedelta(0)) for _ in range(2)]

    assert [len(_deletes(sent)) for sent, _ in rounds] == deletes
    assert [left for _, left in rounds] == rows_left


async def test_pending_rows_are_kept_however_many_batches_a_round_runs(
    published_outbox: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with published_outbox.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO outbox_pending (id, key_slot) "
                "SELECT id, key_slot FROM outbox_message WHERE id % 3 = 0"
            )
        )
    monkeypatch.setattr(outbox_upkeep, "PRUNE_BATCH_ROWS", 70)

    sent, left = await _housekeeping(published_outbox, timedelta(0))

    # 200 published rows in batches of 70 (70, 70, 60); the 100 pending ones stay.
    assert len(_deletes(sent)) == 3
    assert left == N_EVENTS // 3
    async with published_outbox.connect() as connection:
        unlisted = await connection.scalar(
            text(
                "SELECT count(*) FROM outbox_message m WHERE NOT EXISTS "
                "(SELECT 1 FROM outbox_pending p WHERE p.id = m.id)"
            )
        )
    assert unlisted == 0


async def test_a_stopping_relay_prunes_no_further_batch(published_outbox: AsyncEngine) -> None:
    stop = asyncio.Event()
    stop.set()

    sent, left = await _housekeeping(published_outbox, timedelta(0), stop)

    assert _deletes(sent) == []
    assert left == N_EVENTS


async def test_the_gauges_give_the_pending_rows_and_the_age_of_the_oldest(
    published_outbox: AsyncEngine,
) -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry)

    def gauges() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("cascade_outbox_backlog"),
            registry.get_sample_value("cascade_outbox_oldest_age_seconds"),
        )

    async with published_outbox.begin() as connection:
        # 100 rows left unpublished, the oldest of them (lowest id) written 10 minutes ago.
        await connection.execute(
            text(
                "INSERT INTO outbox_pending (id, key_slot) "
                "SELECT id, key_slot FROM outbox_message WHERE id % 3 = 0"
            )
        )
        await connection.execute(
            text(
                "UPDATE outbox_message SET created_at = now() - interval '10 minutes' "
                "WHERE id = (SELECT min(id) FROM outbox_pending)"
            )
        )

    async with published_outbox.connect() as connection:
        await prune_and_measure(connection, OUTBOX, timedelta(days=7), metrics)
    backlog, age = gauges()
    assert backlog == N_EVENTS // 3
    assert age is not None
    assert 600 <= age < 660

    async with published_outbox.begin() as connection:  # the relay publishes them all
        await connection.execute(text("DELETE FROM outbox_pending"))
    async with published_outbox.connect() as connection:
        await prune_and_measure(connection, OUTBOX, timedelta(days=7), metrics)
    assert gauges() == (0, 0)
