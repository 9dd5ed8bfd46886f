"""pytest plugin (entry point `pytest11`): the real Kafka broker and PostgreSQL for tests.

Nothing is ever skipped for want of infrastructure: by default the plugin starts Apache
Kafka from Maven jars and an embedded PostgreSQL itself.

* `CASCADE_TEST_BROKER`: `apache` (default), `external` (uses `KAFKA_BOOTSTRAP_SERVERS`)
  or `testcontainers` (needs Docker and the `cascade-shared[testcontainers]` extra).
* `CASCADE_TEST_DATABASE`: `embedded` (default), `external` (uses `DATABASE_URL`, a
  server URL) or `testcontainers`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cascade.shared.db import create_database, drop_database
from cascade.shared.db import database_url as url_for_database
from cascade.shared.infra.kafka import ApacheKafkaBroker, ensure_kafka_jars, kafka_cache_bytes
from cascade.shared.infra.postgres import EmbeddedPostgres

log = logging.getLogger(__name__)

BROKER_ENV = "CASCADE_TEST_BROKER"
DATABASE_ENV = "CASCADE_TEST_DATABASE"
# Images for the testcontainers option (read when used; override with the variables).
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
POSTGRES_IMAGE = "postgres:18"


def _choice(variable: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(variable, "").strip().lower() or default
    if value not in allowed:
        raise pytest.UsageError(f"{variable}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _apache_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    began = time.monotonic()
    ensure_kafka_jars()
    jars_seconds = time.monotonic() - began
    broker = ApacheKafkaBroker(tmp_path_factory.mktemp("kafka-session"))
    try:
        broker.start()
        log.info(
            "test Kafka broker at %s: started in %.1fs (jars %.1fs, cache %.1f MB)",
            broker.bootstrap_servers,
            broker.last_startup_seconds or 0.0,
            jars_seconds,
            kafka_cache_bytes() / 1e6,
        )
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def _kafka_container() -> Iterator[str]:
    from testcontainers.kafka import KafkaContainer  # optional extra, Docker only

    container = KafkaContainer(os.environ.get("CASCADE_TEST_KAFKA_IMAGE", KAFKA_IMAGE)).with_kraft()
    # Same rule as the local broker: every topic must be declared.
    container.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    with container:
        yield str(container.get_bootstrap_server())


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return the bootstrap servers of the test session's Kafka broker."""
    kind = _choice(BROKER_ENV, "apache", ("apache", "external", "testcontainers"))
    if kind == "external":
        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not servers:
            raise pytest.UsageError(f"{BROKER_ENV}=external needs KAFKA_BOOTSTRAP_SERVERS")
        yield servers
    elif kind == "testcontainers":
        yield from _kafka_container()
    else:
        yield from _apache_broker(tmp_path_factory)


class KafkaBrokerFactory:
    """Starts private Apache Kafka brokers (for tests that crash them); stops them all."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.brokers: list[ApacheKafkaBroker] = []

    def __call__(self, *, heap_max: str = "512m", timeout: float = 60.0) -> ApacheKafkaBroker:
        """Start a new broker in its own data directory and return it."""
        broker = ApacheKafkaBroker(self._tmp.mktemp("kafka-private"), heap_max=heap_max)
        self.brokers.append(broker)
        broker.start(timeout)
        return broker

    def close(self) -> None:
        """Kill every broker started here (their data is thrown away)."""
        for broker in self.brokers:
            broker.kill9()


@pytest.fixture
def kafka_broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBrokerFactory]:
    """Return a factory of private brokers, all stopped when the test ends."""
    factory = KafkaBrokerFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.close()


@dataclass(frozen=True)
class PostgresServer:
    """The test session's PostgreSQL server."""

    kind: str
    admin_url: str  # SQLAlchemy URL (asyncpg driver) of the `postgres` maintenance database
    embedded: EmbeddedPostgres | None = None


def _embedded_postgres() -> Iterator[PostgresServer]:
    # Not under pytest's 0700 basetemp: the server may run as an unprivileged user
    # that has to traverse every parent directory.
    data_dir = Path(tempfile.mkdtemp(prefix="cascade-test-pg-"))
    server = EmbeddedPostgres(data_dir)
    try:
        server.start()
        seconds = server.last_startup_seconds or 0.0
        log.info("test PostgreSQL on port %d: started in %.1fs", server.port, seconds)
        yield PostgresServer("embedded", server.url("postgres"), server)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_container() -> Iterator[PostgresServer]:
    from testcontainers.postgres import PostgresContainer  # optional extra, Docker only

    container: Any = PostgresContainer(
        os.environ.get("CASCADE_TEST_POSTGRES_IMAGE", POSTGRES_IMAGE), driver="asyncpg"
    )
    with container:
        yield PostgresServer("testcontainers", str(container.get_connection_url()))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Return the test session's PostgreSQL server."""
    kind = _choice(DATABASE_ENV, "embedded", ("embedded", "external", "testcontainers"))
    if kind == "external":
        url = os.environ.get("DATABASE_URL", "").strip()
        if not url:
            raise pytest.UsageError(f"{DATABASE_ENV}=external needs DATABASE_URL")
        yield PostgresServer("external", url)
    elif kind == "testcontainers":
        yield from _postgres_container()
    else:
        yield from _embedded_postgres()


@pytest.fixture(scope="session")
def postgres_admin_url(postgres_server: PostgresServer) -> str:
    """Return a URL of the server's maintenance database (to create databases)."""
    return postgres_server.admin_url


@pytest_asyncio.fixture
async def database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """Return the URL of a fresh database private to this test; drop it afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    await create_database(postgres_admin_url, name)
    try:
        yield url_for_database(postgres_admin_url, name)
    finally:
        await drop_database(postgres_admin_url, name)
