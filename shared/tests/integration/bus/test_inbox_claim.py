"""The inbox records a batch's ids with a plain insert, and falls back when one was seen.

From PLAIN_INSERT_MIN_IDS ids the plain insert runs in a savepoint: a seen id fails it,
the savepoint is rolled back and the conflict-checking insert returns only the new ids.
The caller's earlier work in the same transaction must survive that, no id may be recorded
or returned twice, and any other integrity error must reach the caller. Smaller batches go
straight to the conflict-checking insert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.messaging.inbox import PLAIN_INSERT_MIN_IDS, claim_new
from cascade.shared.testing.bus import INBOX
from cascade.shared.testing.statements import statements_sent

pytestmark = pytest.mark.integration

GROUP = "inbox-claim-test"
KEEP_S = 3600


def ids(first: int, last: int) -> list[str]:
    return [f"id-{n:03d}" for n in range(first, last + 1)]


@pytest.fixture
async def engine(bus_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(bus_database, poolclass=NullPool)
    yield engine
    await engine.dispose()


async def _claim(engine: AsyncEngine, batch: list[Any], keep_s: int = KEEP_S) -> set[str]:
    """Claims `batch` in a transaction that first writes an effect row; returns the new ids."""
    async with async_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO bus_effect (source_event_id, message_key, seq, worker) "
                "VALUES ('earlier-work', 'k', 0, 'test')"
            )
        )
        return await claim_new(session, INBOX, GROUP, batch, keep_s)


async def _recorded(engine: AsyncEngine) -> tuple[list[str], int]:
    """Returns the group's recorded ids, sorted, and the effect rows committed."""
    async with engine.connect() as connection:
        recorded = await connection.scalars(
            text("SELECT event_id FROM inbox_message WHERE consumer_group = :g ORDER BY 1"),
            {"g": GROUP},
        )
        effects = await connection.scalar(text("SELECT count(*) FROM bus_effect"))
        return list(recorded), int(effects or 0)


def _sent(statements: list[str], fragment: str) -> bool:
    return any(fragment in s.upper() for s in statements)


async def test_a_batch_of_new_ids_is_recorded_by_a_plain_insert(engine: AsyncEngine) -> None:
    with statements_sent(engine) as sent:
        new = await _claim(engine, ids(0, 39))

    assert new == set(ids(0, 39))
    assert _sent(sent, "SAVEPOINT")
    assert not _sent(sent, "ON CONFLICT")
    assert await _recorded(engine) == (ids(0, 39), 1)


async def test_a_batch_with_seen_ids_returns_the_new_ones_and_keeps_earlier_work(
    engine: AsyncEngine,
) -> None:
    await _claim(engine, ids(0, 39))
    # A new id first, so the failed plain insert has written a row before the seen one.
    with statements_sent(engine) as sent:
        new = await _claim(engine, ["id-050", "id-005", *ids(51, 80), "id-039"])

    assert new == set(ids(50, 80))
    assert _sent(sent, "ON CONFLICT")
    # Both transactions' effect rows committed: the rolled-back savepoint took only its own.
    assert await _recorded(engine) == (ids(0, 39) + ids(50, 80), 2)


async def test_an_id_repeated_in_one_batch_is_new_once(engine: AsyncEngine) -> None:
    new = await _claim(engine, [*ids(0, 39), "id-007"])

    assert new == set(ids(0, 39))
    assert await _recorded(engine) == (ids(0, 39), 1)


async def test_a_small_batch_goes_straight_to_the_conflict_checking_insert(
    engine: AsyncEngine,
) -> None:
    small = ids(0, PLAIN_INSERT_MIN_IDS - 2)

    with statements_sent(engine) as sent:
        new = await _claim(engine, small)

    assert new == set(small)
    assert _sent(sent, "ON CONFLICT")
    assert not _sent(sent, "SAVEPOINT")


async def test_an_integrity_error_other_than_a_duplicate_reaches_the_caller(
    engine: AsyncEngine,
) -> None:
    with (
        statements_sent(engine) as sent,
        pytest.raises(IntegrityError, match=r"null value|not-null"),
    ):
        await _claim(engine, [*ids(0, 39), None])

    # Not taken for a duplicate: the conflict-checking insert was never tried.
    assert not _sent(sent, "ON CONFLICT")
    assert await _recorded(engine) == ([], 0)


async def _keeps(engine: AsyncEngine) -> dict[str, float]:
    """Returns, per recorded id, the seconds from its recording to its expiry."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT event_id, extract(epoch FROM expires_at - processed_at) "
                "FROM inbox_message WHERE consumer_group = :g"
            ),
            {"g": GROUP},
        )
        return {event_id: float(seconds) for event_id, seconds in rows}


async def test_ids_are_remembered_for_the_time_the_caller_asks(engine: AsyncEngine) -> None:
    await _claim(engine, ids(0, 39), keep_s=7_200)  # the plain insert
    await _claim(engine, ["id-000", "id-040"], keep_s=600)  # the conflict-checking one

    keeps = await _keeps(engine)

    # id-000 came back, but its first time is the longer one.
    assert keeps == {**dict.fromkeys(ids(0, 39), 7_200.0), "id-040": 600.0}


async def test_an_id_that_comes_back_is_remembered_from_its_last_delivery(
    engine: AsyncEngine,
) -> None:
    await _claim(engine, ids(0, 1), keep_s=600)
    await _claim(engine, ids(1, 2), keep_s=86_400)

    keeps = await _keeps(engine)

    assert keeps["id-000"] == 600.0
    # From its second delivery: a day, plus the time between the two.
    assert 86_400.0 < keeps["id-001"] < 86_400.0 + 60
    assert keeps["id-002"] == 86_400.0
