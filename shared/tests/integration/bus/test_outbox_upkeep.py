"""The relay's housekeeping prunes only when the oldest outbox row is past retention.

The prune's plan depends on statistics: on an outbox not yet analysed, the planner walks
the primary key filtering on age, and with nothing expired it reads every row, every
round. So housekeeping asks first whether the row with the lowest id has expired, and
issues no delete while it has not. Checked on the statements sent, and with a retention
that has passed, where the same rows must go.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.outbox_upkeep import prune_and_measure
from cascade.shared.testing.bus import OUTBOX, make_steps

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


async def _housekeeping(engine: AsyncEngine, retention: timedelta) -> tuple[list[str], int]:
    """Runs one housekeeping round; returns the statements it sent and the rows left."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with engine.connect() as connection:
            await prune_and_measure(connection, OUTBOX, retention, BusMetrics())
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    async with engine.connect() as connection:
        left = await connection.scalar(text("SELECT count(*) FROM outbox_message"))
    return sent, int(left or 0)


def _deletes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("DELETE FROM OUTBOX_MESSAGE")]


async def test_housekeeping_sends_no_delete_while_the_oldest_row_is_within_retention(
    published_outbox: AsyncEngine,
) -> None:
    sent, left = await _housekeeping(published_outbox, timedelta(days=7))

    assert _deletes(sent) == []
    assert left == N_EVENTS


async def test_housekeeping_prunes_published_rows_once_the_oldest_is_past_retention(
    published_outbox: AsyncEngine,
) -> None:
    # The control: the same outbox, a retention already passed. The delete is sent and
    # removes every row, so the test above would see a delete if one were sent.
    sent, left = await _housekeeping(published_outbox, timedelta(0))

    assert len(_deletes(sent)) == 1
    assert left == 0
