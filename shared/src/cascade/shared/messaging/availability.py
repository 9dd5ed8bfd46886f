"""Telling a database that does not answer from an event that is slow (matrix R6, R14).

An attempt cut by the batch timeout looks the same either way. A hung database host, a
stalled WAL disk or an unreachable synchronous standby, or a network partition leaves
connections open and statements or commits neither finishing nor failing: blaming the
events then would dead-letter good ones, one after another, for as long as that lasts.
A database that commits while the attempt waits on a lock another session holds (a
migration's, a stuck session's) is told apart by the lock watch (messaging.lock_watch).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import get_logger
from cascade.shared.messaging.errors import is_transient

log = get_logger(__name__)

# Long enough for a loaded but working database to commit the probe's transaction.
PROBE_TIMEOUT_S = 2.0
# The longest that may pass between two polls beyond the batch timeout, which the start-up
# guard adds to it: up to a second from the last poll to an attempt, then, once the
# attempt is cut, closing its connection (asyncpg waits up to 2 s for its cancel request to
# reach the server) before the poll that follows at once. A probe, between two polls,
# takes at most its own timeout plus that close.
BEYOND_BATCH_TIMEOUT_S = 4.0


async def database_answers(
    sessions: async_sessionmaker[AsyncSession], timeout_s: float = PROBE_TIMEOUT_S
) -> bool:
    """Returns whether the database commits a trivial transaction within `timeout_s`.

    The transaction takes a transaction id, so its commit is flushed to the WAL (and
    waits for a synchronous standby) as the events' would be.
    """
    try:
        async with asyncio.timeout(timeout_s), sessions() as session, session.begin():
            await session.execute(text("SELECT pg_current_xact_id()"))
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

    `deadline` is the batch timeout the attempt ran under: once it has expired, whatever
    the error its cut surfaced as, the database is probed.
    """
    if deadline.expired():
        if await database_answers(sessions):
            return True  # too slow while the database answers: the events' own doing
        log.warning("consumer.database_not_answering")
        return False
    if is_transient(error):  # including a timeout of its own, as a connection attempt's
        log.warning("consumer.transient_failure", error_class=type(error).__name__)
        return False
    return True
