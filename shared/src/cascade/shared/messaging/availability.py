"""Telling a database that does not answer from an event that is slow (matrix R6, R14).

An attempt cut by the batch timeout looks the same either way. A hung database host, a
storage stall or a network partition leaves connections open and statements neither
finishing nor failing: blaming the events then would dead-letter good ones, one after
another, for as long as the database is away.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import get_logger
from cascade.shared.messaging.errors import is_transient

log = get_logger(__name__)

# Short, as it adds to the longest time between two polls (the start-up guard counts it),
# and long enough for a loaded but working database to run the probe's one statement.
PROBE_TIMEOUT_S = 2.0


async def database_answers(
    sessions: async_sessionmaker[AsyncSession], timeout_s: float = PROBE_TIMEOUT_S
) -> bool:
    """Returns whether the database runs a trivial statement within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s), sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as error:
        if is_transient(error):  # a timeout, a refused or broken connection
            return False
        raise
    return True


async def events_to_blame(
    error: Exception, deadline: asyncio.Timeout, sessions: async_sessionmaker[AsyncSession]
) -> bool:
    """Tells a failed attempt to apply events that is their fault (a bad or a slow event)
    from the database or the broker being unavailable, which is logged here: the caller
    retries that without counting it against any event.

    `deadline` is the batch timeout the attempt ran under.
    """
    if isinstance(error, TimeoutError) and deadline.expired():
        if await database_answers(sessions):
            return True  # too slow while the database answers: the events' own doing
        log.warning("consumer.database_not_answering")
        return False
    if is_transient(error):  # including a timeout of its own, as a connection attempt's
        log.warning("consumer.transient_failure", error_class=type(error).__name__)
        return False
    return True
