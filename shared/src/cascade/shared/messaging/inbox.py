"""The idempotent consumer's memory: which event ids a consumer group has applied."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Table, TextClause, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.shared.messaging.batch import first_occurrences
from cascade.shared.messaging.errors import is_unique_violation
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S


async def fresh_events(
    session: AsyncSession,
    table: Table,
    consumer_group: str,
    events: Sequence[DecodedEvent],
    duplicates: Counter,
    keep_s: int,
) -> Sequence[DecodedEvent]:
    """Records a batch in the inbox, to be remembered for `keep_s` seconds; returns the
    events not applied before, once each."""
    unique = first_occurrences(events)
    ids = [event.envelope.id for event in unique]
    new_ids = await claim_new(session, table, consumer_group, ids, keep_s)
    if len(new_ids) == len(events):
        return events  # the usual case: nothing seen before, nothing to count
    fresh = [event for event in unique if event.envelope.id in new_ids]
    # Counted before the handler runs, so a test process killed later still shows it.
    skipped = collections.Counter(e.envelope.type for e in events)
    skipped.subtract(e.envelope.type for e in fresh)
    for event_type, count in skipped.items():
        if count:
            duplicates.labels(event_type).inc(count)
    return fresh


def longest_keep_s(events: Sequence[DecodedEvent], keep_s: Mapping[str, int]) -> int:
    """Returns the longest time any of the batch's topics needs its ids remembered: a batch
    gets one expiry (one statement parameter), and rarely spans topics."""
    topics = {event.record.topic for event in events if event.record is not None}
    return max(
        (keep_s.get(t, INBOX_KEEP_UNLISTED_S) for t in topics), default=INBOX_KEEP_UNLISTED_S
    )


# From this many ids a batch is first recorded by a plain insert in a savepoint. Below it
# the savepoint's two extra round trips likely cost more than the plain insert saves (about
# 5 µs of database CPU per id): an estimate from a round trip's cost, not a measurement.
PLAIN_INSERT_MIN_IDS = 32


async def claim_new(
    session: AsyncSession,
    table: Table,
    consumer_group: str,
    event_ids: Sequence[str],
    keep_s: int,
) -> set[str]:
    """Records `event_ids` for the group in the caller's transaction, to be remembered for
    `keep_s` seconds; returns the new ones.

    The insert leaves out the ids recorded before, so their effects are not applied a
    second time (Eventuate's received_messages). A batch rarely holds one, so from
    PLAIN_INSERT_MIN_IDS ids a plain insert is tried first (`_recorded_plainly`). A seen
    id is then remembered for `keep_s` from now, if that is longer: it came back, so it may
    come back again for as long as this delivery's topic keeps it.
    """
    if not event_ids:
        return set()
    parameters = {"group": consumer_group, "ids": list(event_ids), "keep": keep_s}
    if len(event_ids) >= PLAIN_INSERT_MIN_IDS and await _recorded_plainly(
        session, table, parameters
    ):
        return set(event_ids)
    new_ids = set(await session.scalar(_claim(table.name), parameters) or ())
    seen = [event_id for event_id in event_ids if event_id not in new_ids]
    if seen:
        await session.execute(_remember_longer(table.name), {**parameters, "ids": seen})
    return new_ids


async def _recorded_plainly(session: AsyncSession, table: Table, parameters: Any) -> bool:
    """Records every id with a plain insert in a savepoint; False if one was seen before.

    ON CONFLICT looks for a conflict before inserting each row and then confirms the
    insert: PostgreSQL spent about 9.5 µs of CPU per id on it, against 4.5 for a plain
    insert (60,000 ids in batches of 2,000). A seen id (a redelivery after a crash or a
    rebalance) fails the plain insert: only the savepoint is rolled back, the caller's
    earlier work stays, and the server logs the duplicate key as an error.
    """
    # Flushed first, so that a failure of the caller's own pending writes is not taken
    # for a duplicate id below.
    await session.flush()
    try:
        async with session.begin_nested():
            await session.execute(_record(table.name), parameters)
    except IntegrityError as error:
        if not is_unique_violation(error):
            raise
        return False
    return True


async def forget(
    session: AsyncSession, table: Table, consumer_group: str, event_ids: Sequence[str]
) -> None:
    """Removes `event_ids` from the group's inbox in the caller's transaction."""
    if not event_ids:
        return
    await session.execute(
        text(
            f"DELETE FROM {table.name} WHERE consumer_group = :group "  # noqa: S608
            "AND event_id = ANY(CAST(:ids AS text[]))"
        ),
        {"group": consumer_group, "ids": list(event_ids)},
    )


# One value for the whole statement: an expiry per row would be a second array to encode.
_EXPIRES_AT = "now() + CAST(:keep AS integer) * interval '1 second'"


@cache
def _record(table_name: str) -> TextClause:
    return text(
        f"INSERT INTO {table_name} (consumer_group, event_id, expires_at) "
        f"SELECT :group, unnest(CAST(:ids AS text[])), {_EXPIRES_AT}"
    )


@cache
def _remember_longer(table_name: str) -> TextClause:
    return text(
        f"UPDATE {table_name} SET expires_at = {_EXPIRES_AT} "  # noqa: S608
        "WHERE consumer_group = :group AND event_id = ANY(CAST(:ids AS text[])) "
        f"AND expires_at < {_EXPIRES_AT}"
    )


@cache
def _claim(table_name: str) -> TextClause:
    # The new ids come back as one array (decoded by asyncpg in C), not as a row each.
    return text(
        f"WITH new AS (INSERT INTO {table_name} (consumer_group, event_id, expires_at) "  # noqa: S608
        f"SELECT :group, unnest(CAST(:ids AS text[])), {_EXPIRES_AT} "
        "ON CONFLICT DO NOTHING RETURNING event_id) SELECT array_agg(event_id) FROM new"
    )
