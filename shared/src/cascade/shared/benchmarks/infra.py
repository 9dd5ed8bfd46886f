"""What every benchmark runs on: a fresh Apache Kafka broker and PostgreSQL, thrown away after."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cascade.shared.infra.kafka import ApacheKafkaBroker
from cascade.shared.infra.postgres import EmbeddedPostgres


@contextmanager
def fresh_infrastructure(prefix: str) -> Iterator[tuple[Path, ApacheKafkaBroker, EmbeddedPostgres]]:
    """Yields (home, broker, postgres), both started; stops them and removes home after."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)  # the embedded PostgreSQL runs as its own user when we are root
    broker, postgres = ApacheKafkaBroker(home / "kafka"), EmbeddedPostgres(home / "postgres")
    try:
        broker.start()
        postgres.start()
        yield home, broker, postgres
    finally:
        broker.stop()
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)
