"""What the local servers (Kafka, Tansu, PostgreSQL) have in common.

A server keeps its state in a data directory: its ports (`ports.json`, so a restart or
another process finds the same ones) and its pid. That is how `cascade down` stops,
from another process, what `cascade up` started.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar, Self

from cascade.shared.infra.processes import (
    LOCALHOST,
    kill9,
    load_or_pick_ports,
    pid_matches,
    read_pid_file,
    spawn_detached,
    stop_process,
    tail,
    tcp_port_open,
    wait_until,
    write_pid_file,
)

log = logging.getLogger(__name__)


class LocalServer:
    """A server whose state lives in `data_dir` and which outlives the process starting it."""

    kind: ClassVar[str] = "server"
    setup_error: ClassVar[type[RuntimeError]] = RuntimeError

    def __init__(self, data_dir: Path, ports: Mapping[str, int | None] | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = load_or_pick_ports(self.data_dir / "ports.json", ports or {"port": None})
        self.port = self.ports["port"]
        self.last_startup_seconds: float | None = None

    @classmethod
    def attach(cls, data_dir: Path) -> Self:
        """Returns a handle on the server set up in `data_dir` (running or not)."""
        if not (data_dir / "ports.json").exists():
            raise cls.setup_error(f"no {cls.kind} has been set up in {data_dir}")
        return cls(data_dir)

    @property
    def pid(self) -> int | None:
        """Returns the server's pid when it is running, else None."""
        raise NotImplementedError

    def is_running(self) -> bool:
        """Returns whether the server process is alive."""
        return self.pid is not None


class DetachedServer(LocalServer):
    """A server that is one process we launch ourselves and track by a pid file."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _pid_marker(self) -> str:
        """A string of the server's command line that tells it apart from a recycled pid."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        pid = read_pid_file(self._pid_file)
        return pid if pid is not None and pid_matches(pid, self._pid_marker) else None

    def _launch(
        self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
    ) -> None:
        """Starts `argv` detached and returns once the server's port accepts connections."""
        began = time.monotonic()
        process = spawn_detached(argv, self.log_file, env=env, cwd=self.data_dir)
        write_pid_file(self._pid_file, process.pid)

        def ready() -> bool:
            if process.poll() is not None:
                raise self.setup_error(
                    f"{self.kind} exited with {process.returncode} during start-up"
                    f"\n--- last lines of {self.log_file} ---\n{tail(self.log_file)}"
                )
            return tcp_port_open(LOCALHOST, self.port)

        what = f"{self.kind} on {self.bootstrap_servers}"
        try:
            wait_until(ready, timeout, what, log_file=self.log_file)
        except BaseException:
            kill9(process.pid)
            raise
        self.last_startup_seconds = time.monotonic() - began
        log.info("%s ready in %.2fs", what, self.last_startup_seconds)

    def stop(self, timeout: float = 20.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after `timeout`)."""
        pid = self.pid
        if pid is not None:
            stop_process(pid, timeout)
        self._pid_file.unlink(missing_ok=True)

    def kill9(self) -> None:
        """Crashes the server with SIGKILL and returns once it is gone."""
        pid = self.pid
        if pid is not None:
            kill9(pid)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Freezes the server (SIGSTOP) while the block runs, then lets it go on (SIGCONT).

        Frozen, it keeps its sockets: the kernel still accepts connections and buffers
        requests, but nothing is answered, as with a long GC pause or a hung host.
        """
        pid = self.pid
        if pid is None:
            raise RuntimeError(f"{self.kind} is not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with suppress(ProcessLookupError):  # killed meanwhile: nothing left to wake
                os.kill(pid, signal.SIGCONT)
