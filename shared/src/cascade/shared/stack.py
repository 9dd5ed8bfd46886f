"""The local stack behind `make up`, `make demo` and `make down`.

`up` starts a broker, PostgreSQL (one database per service), applies every service's
migrations, starts every service in the background and returns when all answer
`/readyz`. It records what it started in `<home>/stack.json`; `down` stops exactly that
and then proves that no process carrying the stack's marker is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

from cascade.shared import db, migrations
from cascade.shared.auth import generate_keypair
from cascade.shared.catalog import SERVICE_PORTS
from cascade.shared.infra import processes
from cascade.shared.infra.kafka import ApacheKafkaBroker, ensure_kafka_jars
from cascade.shared.infra.postgres import EmbeddedPostgres
from cascade.shared.infra.tansu import EmbeddedKafkaBroker
from cascade.shared.messaging.admin import apply_topology
from cascade.shared.settings import BrokerKind

SERVICES = SERVICE_PORTS
MARKER_ENV = "CASCADE_STACK_HOME"
READY_TIMEOUT_S = 90.0


@dataclass
class StackConfig:
    """Where the stack lives and which infrastructure it uses."""

    home: Path
    broker: BrokerKind = BrokerKind.EMBEDDED
    kafka_port: int | None = 9092
    postgres_port: int | None = 5432
    external_bootstrap: str | None = None
    external_database_url: str | None = None
    service_ports: dict[str, int] = field(default_factory=lambda: dict(SERVICES))

    @classmethod
    def from_env(cls, home: Path, broker: BrokerKind | None = None) -> StackConfig:
        """Returns the config from CASCADE_* variables (see README, Configuration)."""
        env = os.environ
        return cls(
            home=home.resolve(),
            broker=broker or BrokerKind(env.get("CASCADE_BROKER", BrokerKind.EMBEDDED.value)),
            kafka_port=int(env.get("CASCADE_KAFKA_PORT", "9092")),
            postgres_port=int(env.get("CASCADE_POSTGRES_PORT", "5432")),
            external_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS"),
            external_database_url=env.get("DATABASE_URL"),
            service_ports={
                name: int(env.get(f"{name.upper()}_HTTP_PORT", str(port)))
                for name, port in SERVICES.items()
            },
        )


@dataclass
class StackState:
    """What `up` started; `down` reads it back."""

    broker: str
    bootstrap_servers: str
    database_server_url: str
    service_pids: dict[str, int] = field(default_factory=dict)
    service_urls: dict[str, str] = field(default_factory=dict)

    def save(self, home: Path) -> None:
        (home / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> StackState | None:
        path = home / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None


def up(config: StackConfig) -> StackState:
    """Starts the whole stack and returns when every service is ready."""
    home = config.home
    home.mkdir(parents=True, exist_ok=True)
    # Every process we start inherits the marker, so `down` can find stragglers.
    os.environ[MARKER_ENV] = str(home)
    with _stop_everything_on_failure(home):
        keys = home / "keys"
        generate_keypair(keys)
        bootstrap, idempotence = _start_broker(config)
        asyncio.run(apply_topology(bootstrap))
        server_url = _start_postgres(config)
        state = StackState(config.broker.value, bootstrap, server_url)
        state.save(home)
        for name, port in config.service_ports.items():
            database_url = _prepare_database(server_url, name)
            env = _service_env(name, port, bootstrap, idempotence, database_url, config, keys)
            process = processes.spawn_detached(
                [sys.executable, "-m", f"cascade.{name}"], home / "logs" / f"{name}.log", env=env
            )
            state.service_pids[name] = process.pid
            state.service_urls[name] = f"http://127.0.0.1:{port}"
            state.save(home)
        for name, url in state.service_urls.items():
            _wait_ready(name, url, home / "logs" / f"{name}.log")
        _write_stack_env(home, state)
    return state


def down(home: Path) -> list[str]:
    """Stops everything `up` started; returns descriptions of processes still alive."""
    state = StackState.load(home.resolve())
    if state is not None:
        for pid in state.service_pids.values():
            processes.stop_process(pid)
    _stop_broker(home)
    if (home / "postgres" / "ports.json").exists():
        EmbeddedPostgres.attach(home / "postgres").stop()
    for leftover in _marked_processes(home):
        processes.kill9(leftover.pid)
    for path in (home / "stack.json", home / "stack.env"):
        path.unlink(missing_ok=True)
    return [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in _marked_processes(home)]


def _start_broker(config: StackConfig) -> tuple[str, bool]:
    if config.broker is BrokerKind.EXTERNAL:
        if not config.external_bootstrap:
            raise RuntimeError("CASCADE_BROKER=external needs KAFKA_BOOTSTRAP_SERVERS")
        return config.external_bootstrap, True
    if config.broker is BrokerKind.APACHE:
        ensure_kafka_jars()
        broker: ApacheKafkaBroker | EmbeddedKafkaBroker = ApacheKafkaBroker(
            config.home / "kafka", port=config.kafka_port
        )
        broker.start()
        return broker.bootstrap_servers, True
    broker = EmbeddedKafkaBroker(config.home / "tansu", port=config.kafka_port)
    broker.start()
    # The embedded broker has no InitProducerId: idempotence must be off there.
    return broker.bootstrap_servers, False


def _stop_broker(home: Path) -> None:
    if (home / "kafka" / "ports.json").exists():
        ApacheKafkaBroker.attach(home / "kafka").stop()
    if (home / "tansu" / "ports.json").exists():
        EmbeddedKafkaBroker.attach(home / "tansu").stop()


def _start_postgres(config: StackConfig) -> str:
    if config.external_database_url:
        return config.external_database_url
    server = EmbeddedPostgres(config.home / "postgres", port=config.postgres_port)
    server.start()
    return server.url("postgres")


def _prepare_database(server_url: str, service: str) -> str:
    """Creates the service's database if needed, migrates it, returns its URL."""
    database_url = db.database_url(server_url, service)
    asyncio.run(db.create_database(server_url, service))
    migrations.upgrade(f"cascade.{service}", database_url)
    return database_url


def _service_env(
    name: str,
    port: int,
    bootstrap: str,
    idempotence: bool,
    database_url: str,
    config: StackConfig,
    keys: Path,
) -> dict[str, str]:
    prefix = name.upper()
    return {
        **os.environ,
        f"{prefix}_HTTP_PORT": str(port),
        f"{prefix}_BROKER": config.broker.value,
        f"{prefix}_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        f"{prefix}_KAFKA__ENABLE_IDEMPOTENCE": str(idempotence).lower(),
        f"{prefix}_DATABASE__URL": database_url,
        f"{prefix}_AUTH__PUBLIC_KEY_PATH": str(keys / "jwt-public.pem"),
    }


def _wait_ready(name: str, url: str, log_file: Path) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    processes.wait_until(ready, READY_TIMEOUT_S, f"{name} to be ready at {url}", log_file=log_file)


def _write_stack_env(home: Path, state: StackState) -> None:
    lines = [f"KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}"]
    lines += [f"{name.upper()}_URL={url}" for name, url in state.service_urls.items()]
    (home / "stack.env").write_text("\n".join(lines) + "\n")


def _marked_processes(home: Path) -> list[psutil.Process]:
    marked = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_ENV) == str(home.resolve()):
                marked.append(process)
        except (psutil.Error, OSError):
            continue
    return [p for p in marked if p.pid != os.getpid() and _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextmanager
def _stop_everything_on_failure(home: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        down(home)
        raise
