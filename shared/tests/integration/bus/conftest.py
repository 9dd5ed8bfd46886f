"""Fixtures of the event backbone's fault tests (real Apache Kafka, real PostgreSQL)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cascade.shared.db import create_database
from cascade.shared.infra.postgres import EmbeddedPostgres
from cascade.shared.messaging.admin import ensure_topics, new_topic
from cascade.shared.messaging.topology import dead_letter_topic, topic
from cascade.shared.testing.bus import create_bus_schema
from cascade.shared.testing.harness import Worker
from cascade.shared.testing.kafka import create_topics, unique_name


@pytest.fixture
async def private_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    """A private PostgreSQL (that the test kills or freezes) with a bus database on it."""
    # Not under pytest's 0700 tmp_path: as root the server runs as an unprivileged user.
    data_dir = Path(tempfile.mkdtemp(prefix="cascade-private-pg-"))
    server = EmbeddedPostgres(data_dir)
    server.start(timeout=120)
    try:
        await create_database(server.url("postgres"), "bus")
        await create_bus_schema(server.url("bus"))
        yield server, server.url("bus")
    finally:
        server.kill9()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def bus_database(database_url: str) -> str:
    """A fresh database with the outbox, inbox and effect tables."""
    await create_bus_schema(database_url)
    return database_url


@pytest.fixture
async def bus_topics(kafka_bootstrap_servers: str) -> tuple[str, str]:
    """A fresh 6-partition events topic and its dead-letter topic."""
    events, dead_letters = unique_name("events"), unique_name("dead-letters")
    await create_topics(kafka_bootstrap_servers, [events], partitions=6)
    # As declared in the topology: a dead letter may be larger than the broker's default.
    spec = replace(topic(dead_letter_topic("accounts")), name=dead_letters)
    await ensure_topics(kafka_bootstrap_servers, [new_topic(spec, replication_factor=1)])
    return events, dead_letters


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Makes bus_worker processes; every one still running is stopped at teardown."""
    made: list[Worker] = []

    def make(role: str, *args: str) -> Worker:
        worker = Worker(tmp_path, role, args)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


ConsumerWorker = Callable[..., tuple[Worker, str]]


@pytest.fixture
def consumer_worker(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> ConsumerWorker:
    """Makes a consumer worker of a fresh group on the test topics (or `topic`); returns it
    and its group."""

    def make(*extra: str, max_records: int = 50, topic: str | None = None) -> tuple[Worker, str]:
        group = unique_name("group")
        worker = workers(
            "consume",
            *("--db", bus_database, "--bootstrap", kafka_bootstrap_servers, "--group", group),
            *("--topic", topic or bus_topics[0], "--dead-letter-topic", bus_topics[1]),
            *("--max-records", str(max_records), *extra),
        )
        return worker, group

    return make
