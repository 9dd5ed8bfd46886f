"""Gauges of the events held for accounts core banking has not opened yet.

The contract keeps such events until the opening arrives, for as long as it takes. An
opening that never comes (lost upstream, or sent under another id) leaves them held
silently; these gauges let an alert see them: the count, and the age of the oldest. Every
replica measures the same database: an alert takes the max across replicas, not the sum,
and the time of the last good measurement tells a stale figure from an empty table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.adapters.held import held_backlog
from cascade.shared.app import Lifespan
from cascade.shared.messaging.backoff import repeat_until_stopped
from cascade.shared.messaging.runtime import run_in_background

# How long a stopping service waits for a measurement in flight (a database that hangs).
STOP_GRACE_S = 5.0


class HeldGauges:
    """The gauges, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.count = Gauge(
            "cascade_accounts_held_events",
            "Events kept for accounts core banking has not opened yet",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "cascade_accounts_held_oldest_age_seconds",
            "Age of the oldest event kept for an account not opened yet (0 if none)",
            registry=registry,
        )
        self.measured_at = Gauge(
            "cascade_accounts_held_measured_timestamp_seconds",
            "Unix time of the last measurement of the held events that succeeded",
            registry=registry,
        )


async def measure_held(sessions: async_sessionmaker[AsyncSession], gauges: HeldGauges) -> None:
    """Sets the gauges from the database."""
    async with sessions() as session:
        count, oldest_s = await held_backlog(session)
    gauges.count.set(count)
    gauges.oldest_age.set(oldest_s)
    gauges.measured_at.set_to_current_time()


def held_event_gauges(every_s: float) -> Lifespan:
    """Returns a lifespan that measures the held events every `every_s` seconds."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gauges, stop = HeldGauges(app.state.registry), asyncio.Event()
        # A failed measurement (the database is down) leaves the gauges at their last values.
        measuring = repeat_until_stopped(
            stop,
            every_s,
            lambda: measure_held(app.state.sessions, gauges),
            "accounts.held_measure_failed",
        )
        async with run_in_background(measuring, stop, grace_s=STOP_GRACE_S):
            yield

    return lifespan
