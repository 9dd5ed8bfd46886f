"""Telling an attempt that waits on another session's lock from a slow event (R6, R14).

A migration's ACCESS EXCLUSIVE lock (`ALTER TABLE`, `CREATE INDEX` without CONCURRENTLY)
or a session left in a transaction with a row locked stops the handler's statements while
the database itself commits. The database probe (messaging.availability) then blames the
events, and the one-by-one fallback parks good events, one after another, for as long as
the lock is held. So shortly before an attempt's deadline the consumer asks whether the
attempt's server process waits on a lock another session holds; an attempt cut after
that answer is retried without counting against the events, however long the lock lasts.

Asked before the cut, not after it: cutting an attempt makes asyncpg send the server a
cancel request, which ends the wait, and the evidence with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import get_logger
from cascade.shared.messaging.errors import is_transient

log = get_logger(__name__)

# How long before the deadline the watch asks, and how long it waits for the answer.
LEAD_S = 1.0

_BLOCKERS = text("SELECT cardinality(pg_blocking_pids(:pid))")
_checks: set[asyncio.Task[None]] = set()  # running checks, kept from the garbage collector


async def backend_pid(session: AsyncSession) -> int:
    """Returns the server process of the session's connection (known since connecting)."""
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection  # asyncpg's
    return int(driver.get_server_pid())


async def waits_on_others(
    sessions: async_sessionmaker[AsyncSession], pid: int, timeout_s: float = LEAD_S
) -> bool:
    """Returns whether server process `pid` waits for a lock another session holds; False
    when the database does not answer within `timeout_s` (the probe then tells)."""
    async with sessions() as session:
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await session.scalar(_BLOCKERS, {"pid": pid}))
        except BaseException as error:
            # Dropped, not returned to the pool: a rollback over it could hang as long.
            await session.invalidate()
            if isinstance(error, Exception) and is_transient(error):
                return False
            raise


class LockWatch:
    """Asks, LEAD_S before an attempt's deadline, whether it waits on another's lock."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], pid: int, deadline_at: float | None
    ) -> None:
        self._sessions, self._pid = sessions, pid
        self._blocked = False
        self._handle: asyncio.TimerHandle | None = None
        if deadline_at is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_at(deadline_at - LEAD_S, self._start)

    def _start(self) -> None:
        task = asyncio.get_running_loop().create_task(self._check())
        _checks.add(task)
        task.add_done_callback(_checks.discard)

    async def _check(self) -> None:
        try:
            self._blocked = await waits_on_others(self._sessions, self._pid)
        except Exception as error:  # the attempt is then judged without it, as before
            log.warning("consumer.lock_check_failed", error_class=type(error).__name__)

    def stop(self) -> bool:
        """Stops watching; returns whether the attempt was seen waiting on another's lock."""
        if self._handle is not None:
            self._handle.cancel()
        return self._blocked
