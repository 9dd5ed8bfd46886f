"""The relay vacuums `outbox_pending` itself, after every `vacuum_every_rows` published rows.

Each event inserts a row there and the relay deletes it after the broker's ack. Every claim
reads the list from its lowest id, dead entries included, until a vacuum removes them;
autovacuum comes round about once a minute. Checked with PostgreSQL's own count of manual
vacuums (`vacuum_count`, which autovacuum does not move), and once with the setting off.
A vacuum that fails is logged; it must not take the relay's connection down.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.clients import make_producer
from cascade.shared.messaging.metrics import BusMetrics
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.outbox_upkeep import vacuum_pending
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import OUTBOX, make_steps

pytestmark = pytest.mark.integration

N_EVENTS = 1000


async def _pending_vacuums(database_url: str) -> tuple[int, int]:
    """Returns (rows still pending, manual vacuums of the pending list so far)."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            pending = await connection.scalar(text("SELECT count(*) FROM outbox_pending"))
            vacuums = await connection.scalar(
                text(
                    "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox_pending'"
                )
            )
            return int(pending or 0), int(vacuums or 0)
    finally:
        await engine.dispose()


async def _publish_all(
    database_url: str, bootstrap: str, topic: str, vacuum_every_rows: int | None
) -> int:
    """Writes N_EVENTS, runs a relay until all are published; returns the manual vacuums."""
    engine = create_async_engine(database_url, pool_size=3)
    async with engine.begin() as connection:
        # Autovacuum holding the table would make SKIP_LOCKED skip one of the relay's.
        await connection.execute(
            text("ALTER TABLE outbox_pending SET (autovacuum_enabled = false)")
        )
    steps = make_steps(N_EVENTS, 50)
    for first in range(0, N_EVENTS, 100):
        async with async_sessionmaker(engine)() as session, session.begin():
            await add_to_outbox(session, OUTBOX, [(topic, e) for e in steps[first : first + 100]])
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    relay = OutboxRelay(
        engine,
        OUTBOX,
        lambda: make_producer(kafka, client_id="vacuum-test"),
        metrics=BusMetrics(),
        # Small claims, so the threshold is crossed between batches, as under load.
        settings=RelaySettings(batch_size=100, vacuum_every_rows=vacuum_every_rows),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:

        async def all_published() -> bool:
            return (await _pending_vacuums(database_url))[0] == 0

        await wait_until_async(all_published, 60, "every outbox row to be published")
    finally:
        stop.set()
        await task  # the relay finishes the batch in hand, its vacuum included
        await engine.dispose()
    return (await _pending_vacuums(database_url))[1]


async def test_the_relay_vacuums_its_pending_list_as_it_publishes(
    bus_database: str, kafka_bootstrap_servers: str, bus_topics: tuple[str, str]
) -> None:
    vacuums = await _publish_all(bus_database, kafka_bootstrap_servers, bus_topics[0], 300)
    # 1,000 rows in claims of 100: a vacuum after rows 300, 600 and 900.
    assert vacuums == 3


async def test_with_the_setting_off_only_autovacuum_would_clean_it(
    bus_database: str, kafka_bootstrap_servers: str, bus_topics: tuple[str, str]
) -> None:
    vacuums = await _publish_all(bus_database, kafka_bootstrap_servers, bus_topics[0], None)
    assert vacuums == 0


async def test_a_failed_vacuum_is_logged_and_not_raised(bus_database: str) -> None:
    engine = create_async_engine(bus_database, poolclass=NullPool)
    try:
        # Inside a transaction VACUUM is refused: the relay must log that and go on
        # publishing, not drop its connection and slot locks over it.
        async with engine.connect() as connection, connection.begin():
            with capture_logs() as logs:
                await vacuum_pending(connection)
    finally:
        await engine.dispose()
    assert [entry["event"] for entry in logs] == ["outbox.vacuum_failed"]
