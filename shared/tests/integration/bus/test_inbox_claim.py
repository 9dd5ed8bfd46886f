"""The inbox records a batch's ids with a plain insert, and falls back when one was seen.

The plain insert runs in a savepoint: a seen id fails it, the savepoint is rolled back and
the conflict-checking insert returns only the new ids. The caller's earlier work in the
same transaction must survive that, and no id may be recorded or returned twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.messaging.inbox import claim_new
from cascade.shared.testing.bus import INBOX

pytestmark = pytest.mark.integration

GROUP = "inbox-claim-test"


@pytest.fixture
async def engine(bus_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(bus_database, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def _claim(engine: AsyncEngine, ids: list[str]) -> tuple[set[str], list[str]]:
    """Claims `ids` in a transaction that first writes an effect row; returns the new ids
    and the statements sent."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO bus_effect (source_event_id, message_key, seq, worker) "
                    "VALUES ('earlier-work', 'k', 0, 'test')"
                )
            )
            new = await claim_new(session, INBOX, GROUP, ids)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    return new, sent


async def _recorded(engine: AsyncEngine) -> tuple[list[str], int]:
    """Returns the group's recorded ids, sorted, and the effect rows committed."""
    async with engine.connect() as connection:
        ids = await connection.scalars(
            text("SELECT event_id FROM inbox_message WHERE consumer_group = :g ORDER BY 1"),
            {"g": GROUP},
        )
        effects = await connection.scalar(text("SELECT count(*) FROM bus_effect"))
        return list(ids), int(effects or 0)


def _checks_conflicts(statements: list[str]) -> bool:
    return any("ON CONFLICT" in s for s in statements)


async def test_a_batch_of_new_ids_is_recorded_by_a_plain_insert(engine: AsyncEngine) -> None:
    new, sent = await _claim(engine, ["a", "b", "c"])

    assert new == {"a", "b", "c"}
    assert not _checks_conflicts(sent)
    assert await _recorded(engine) == (["a", "b", "c"], 1)


async def test_a_batch_with_seen_ids_returns_the_new_ones_and_keeps_earlier_work(
    engine: AsyncEngine,
) -> None:
    await _claim(engine, ["a", "b"])

    new, sent = await _claim(engine, ["b", "c", "a", "d"])

    assert new == {"c", "d"}
    assert _checks_conflicts(sent)
    # Both transactions' effect rows committed: the rolled-back savepoint took only its own.
    assert await _recorded(engine) == (["a", "b", "c", "d"], 2)


async def test_an_id_repeated_in_one_batch_is_new_once(engine: AsyncEngine) -> None:
    new, _ = await _claim(engine, ["a", "a", "b"])

    assert new == {"a", "b"}
    assert await _recorded(engine) == (["a", "b"], 1)
