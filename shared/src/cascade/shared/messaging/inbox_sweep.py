"""Deleting the inbox rows past their expiry: the whole table, a block range at a time.

Each inbox row carries until when its event could still come back (`expires_at`, set by
the consumer from topology.inbox_keep_ms). The column has no index: a B-tree on it cost
about 8% of `make bench-bus`'s full path, on every insert, and a BRIN index would widen
for good once swept pages are filled again. The sweep reads the table in physical order
instead, one block range per statement (a TID range scan, PostgreSQL 14 or later),
deleting there the rows past their expiry, with a pause between statements: a pass reads
the whole table once, a day by default. Its reads are sequential and paced, but go through
shared buffers (a TID range scan takes no bulk-read ring), so a pass evicts pages there.

One replica sweeps: the one whose session holds the advisory lock, between passes too.
When that session ends, another replica takes over within `retry_s`, at a random block,
so that restarts mid-pass do not leave the table's end unswept.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cascade.shared.logging import get_logger
from cascade.shared.messaging.advisory import INBOX_SWEEP_LOCK, try_advisory_lock
from cascade.shared.messaging.backoff import repeat_until_stopped, wait_or_stop
from cascade.shared.messaging.metrics import BusMetrics

log = get_logger(__name__)


@dataclass(frozen=True)
class SweepSettings:
    blocks_per_statement: int = 1024  # 8 MiB of table with PostgreSQL's 8 KiB blocks
    statement_pause_s: float = 1.0  # so a pass reads at most about 8 MiB/s
    cycle_s: float = 86_400.0  # from the start of one pass to the start of the next
    retry_s: float = 30.0  # after a failure, or while another replica sweeps


class InboxSweep:
    """Runs the sweep of one inbox table for as long as the service runs."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        metrics: BusMetrics,
        settings: SweepSettings | None = None,
    ) -> None:
        self._engine = engine
        self._table = table
        self._metrics = metrics
        self._settings = settings or SweepSettings()

    async def run(self, stop: asyncio.Event) -> None:
        """Sweeps whenever this replica holds the lock, until `stop` is set."""

        async def sweep_if_holding_lock() -> None:
            async with self._engine.connect() as connection:
                await self._sweep_while_holding_lock(connection, stop)

        retry_s = self._settings.retry_s
        await repeat_until_stopped(stop, retry_s, sweep_if_holding_lock, "inbox.sweep_failed")

    async def _sweep_while_holding_lock(
        self, connection: AsyncConnection, stop: asyncio.Event
    ) -> None:
        locked: bool | None = None  # not known until the server's answer is read
        try:
            locked = await try_advisory_lock(connection, INBOX_SWEEP_LOCK, 0)
            await connection.commit()
            if not locked:
                return
            start_block: int | None = None  # the first pass starts anywhere
            while not stop.is_set():
                started = time.monotonic()
                swept = await self.sweep_once(connection, stop, start_block)
                log.info("inbox.swept", rows=swept, seconds=round(time.monotonic() - started))
                start_block = 0
                await wait_or_stop(stop, self._settings.cycle_s - (time.monotonic() - started))
        finally:
            if locked is not False:
                # Back in the pool the connection would keep the lock: ending its session
                # frees it.
                await connection.invalidate()

    async def sweep_once(
        self, connection: AsyncConnection, stop: asyncio.Event, start_block: int | None = 0
    ) -> int:
        """Makes one pass over the table as it is now, from `start_block` (None: a random
        one) round to it again; returns the rows deleted."""
        blocks = int(await connection.scalar(_blocks(self._table.name)) or 0)
        await connection.commit()
        step, swept = self._settings.blocks_per_statement, 0
        start = start_block
        if start is None:  # anywhere: a spread of starts, no secret
            start = random.randrange(max(blocks, 1))  # noqa: S311
        ranges = [*range(start, blocks, step), *range(0, start, step)]
        for first in ranges:
            if stop.is_set():
                return swept
            end = min(first + step, start) if first < start else first + step
            result = await connection.execute(
                delete_expired(self._table.name),
                {"first": (first, 0), "end": (end, 0)},  # (block, line) tids
            )
            await connection.commit()
            swept += int(result.rowcount)
            self._metrics.inbox_swept.inc(result.rowcount)
            await wait_or_stop(stop, self._settings.statement_pause_s)
        self._metrics.inbox_sweep_finished.set_to_current_time()
        return swept


_INBOX_SIZE = text(
    "SELECT pg_total_relation_size(oid), reltuples FROM pg_class "
    "WHERE oid = CAST(CAST(:table AS text) AS regclass)"
)


async def measure_inbox(engine: AsyncEngine, table: Table, metrics: BusMetrics) -> None:
    """Sets the inbox's size gauges, from the catalogue: no row is read."""
    async with engine.connect() as connection:
        size, rows = (await connection.execute(_INBOX_SIZE, {"table": table.name})).one()
    metrics.inbox_bytes.set(size)
    metrics.inbox_rows.set(max(rows, 0))  # -1 until the table is first analysed


@cache
def _blocks(table_name: str) -> TextClause:
    return text(f"SELECT pg_relation_size('{table_name}') / current_setting('block_size')::bigint")


@cache
def delete_expired(table_name: str) -> TextClause:
    # Block ranges, not rows: the ctid bounds make it a TID range scan of those blocks.
    return text(
        f"DELETE FROM {table_name} WHERE ctid >= CAST(:first AS tid) "  # noqa: S608
        "AND ctid < CAST(:end AS tid) AND expires_at < now()"
    )
