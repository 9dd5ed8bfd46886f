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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.logging import get_logger
from cascade.shared.messaging.errors import is_transient
from cascade.shared.messaging.metrics import BusMetrics

log = get_logger(__name__)

# The watch asks this long before the deadline and waits at most CHECK_TIMEOUT_S for the
# answer, so that a check started late or on a busy database still answers before the cut.
LEAD_S = 2.0
CHECK_TIMEOUT_S = 1.0

# Counted and aged for the log; never the blockers' query text, which may hold debtors' data.
_BLOCKERS = text(
    "SELECT count(*), extract(epoch FROM max(now() - xact_start)) FROM pg_stat_activity"
    " WHERE pid = ANY(pg_blocking_pids(:pid))"
)
_checks: set[asyncio.Task[None]] = set()  # running checks, kept from the garbage collector


@dataclass(frozen=True)
class Blockers:
    """The sessions an attempt waits on: how many, and the age of the oldest's transaction
    (None where this database role may not see it)."""

    sessions: int
    oldest_transaction_s: float | None


async def backend_pid(session: AsyncSession) -> int:
    """Returns the server process of the session's connection (known since connecting)."""
    connection = await session.connection()
    driver: Any = (await connection.get_raw_connection()).driver_connection  # asyncpg's
    return int(driver.get_server_pid())


async def blockers_of(
    sessions: async_sessionmaker[AsyncSession], pid: int, timeout_s: float = CHECK_TIMEOUT_S
) -> Blockers | None:
    """Returns the sessions whose locks server process `pid` waits for; None when it waits
    for none, or when the database does not answer within `timeout_s` (logged: the
    attempt is then judged without it)."""
    async with sessions() as session:
        try:
            async with asyncio.timeout(timeout_s):
                # Autocommit: no transaction, so nothing to roll back when the session closes.
                autocommit = {"isolation_level": "AUTOCOMMIT"}
                connection = await session.connection(execution_options=autocommit)
                count, oldest_s = (await connection.execute(_BLOCKERS, {"pid": pid})).one()
        except BaseException as error:
            # Dropped, not returned to the pool: it may be stuck mid-statement.
            await session.invalidate()
            if isinstance(error, Exception) and is_transient(error):
                log.warning("consumer.lock_check_unanswered", error_class=type(error).__name__)
                return None
            raise
    if not count:
        return None
    return Blockers(int(count), None if oldest_s is None else float(oldest_s))


class LockWatch:
    """Asks, LEAD_S before an attempt's deadline, whether it waits on another's lock."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], pid: int, deadline_at: float | None
    ) -> None:
        self._sessions, self._pid = sessions, pid
        self.blockers: Blockers | None = None
        self._task: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = None
        if deadline_at is not None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_at(deadline_at - LEAD_S, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._check())
        _checks.add(self._task)
        self._task.add_done_callback(_checks.discard)

    async def _check(self) -> None:
        try:
            self.blockers = await blockers_of(self._sessions, self._pid)
        except Exception as error:  # the attempt is then judged without it, as before
            log.warning("consumer.lock_check_failed", error_class=type(error).__name__)

    def stop(self) -> Blockers | None:
        """Stops watching (a check still running is cancelled); returns what the attempt
        was seen waiting on, if anything."""
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return self.blockers


class BlockedCuts:
    """Remembers the attempt that the batch timeout cut while it waited on another
    session's lock, until that cut is judged."""

    def __init__(self, metrics: BusMetrics) -> None:
        self._metrics = metrics
        self._cut: tuple[asyncio.Timeout, Blockers] | None = None

    def record(self, deadline: asyncio.Timeout, watch: LockWatch) -> None:
        """Called when the attempt under `deadline` is cut, with its watch."""
        blockers = watch.stop()
        self._cut = None if blockers is None else (deadline, blockers)

    def blocked(self, deadline: asyncio.Timeout) -> bool:
        """Whether the attempt under `deadline` was cut while blocked (logged and counted);
        such an attempt is retried, however long the lock is held: never the events' doing."""
        cut, self._cut = self._cut, None
        if cut is None or cut[0] is not deadline or not deadline.expired():
            return False
        self._metrics.blocked_attempts.inc()
        log.warning(
            "consumer.blocked_by_lock",
            blocking_sessions=cut[1].sessions,
            oldest_blocking_transaction_s=cut[1].oldest_transaction_s,
        )
        return True
