"""Apache Kafka 4.x run from Maven Central's jars: no tarball, no Docker.

See design/kafka-from-maven.md. One KRaft node in combined broker+controller mode with a
static quorum, listening and advertising 127.0.0.1 only.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cascade.shared.infra.kafka_jars import (
    KAFKA_VERSION,
    KafkaSetupError,
    ensure_kafka_jars,
    kafka_cache_bytes,
)
from cascade.shared.infra.processes import LOCALHOST
from cascade.shared.infra.server import DetachedServer

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaBroker",
    "KafkaSetupError",
    "ensure_kafka_jars",
    "kafka_cache_bytes",
]

# The Apache Docker image's default cluster id: any 22-character base64url id works.
CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.target = {target}
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
# keeps the readiness line "[KafkaRaftServer nodeId=1] Kafka Server started"
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """Return server.properties for one combined-mode node (design note section 3)."""
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{LOCALHOST}:{controller_port}
listeners=PLAINTEXT://{LOCALHOST}:{port},CONTROLLER://{LOCALHOST}:{controller_port}
advertised.listeners=PLAINTEXT://{LOCALHOST}:{port},CONTROLLER://{LOCALHOST}:{controller_port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
# single node
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# every topic is declared: a missing declaration must fail loudly
auto.create.topics.enable=false
num.partitions=1
# fast tests
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
group.min.session.timeout.ms=1000
log.initial.task.delay.ms=100
# after a crash the new incarnation cannot register until the old session expires
# (default 9 s); heartbeats stay in-process, so a short session is safe
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# small footprint (the default dedupe buffer is 128 MiB of heap)
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
"""


class ApacheKafkaBroker(DetachedServer):
    """One Apache Kafka node whose state lives in `data_dir`; survives its starter."""

    kind = "Apache Kafka broker"
    setup_error = KafkaSetupError

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap_max: str = "512m",
    ) -> None:
        super().__init__(data_dir, {"port": port, "controller_port": controller_port})
        self.controller_port = self.ports["controller_port"]
        self.heap_max = heap_max

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kafka-logs"

    @property
    def _config(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _pid_marker(self) -> str:
        return str(self._config)

    def _java(self, log4j: Path) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KafkaSetupError("`java` (17 or later) is not on PATH: Kafka needs it")
        return [
            java,
            f"-Xmx{self.heap_max}",
            "-Xms128m",
            # Few GC threads and C1 only: fast start and a small footprint on 2 cores.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            str(ensure_kafka_jars() / "*"),
        ]

    def _write_config(self) -> None:
        props = server_properties(self.port, self.controller_port, self.log_dir)
        self._config.write_text(props)
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(target="SYSTEM_OUT"))
        (self.data_dir / "tools-log4j2.properties").write_text(_LOG4J2.format(target="SYSTEM_ERR"))

    def _format_once(self) -> None:
        if (self.log_dir / "meta.properties").exists():
            return
        argv = self._java(self.data_dir / "tools-log4j2.properties")
        argv += ["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(self._config)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise KafkaSetupError(f"kafka-storage format failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 60.0) -> None:
        """Starts the broker detached and returns once its PLAINTEXT port accepts."""
        if self.is_running():
            return
        self._write_config()
        self._format_once()
        argv = [*self._java(self.data_dir / "log4j2.properties"), "kafka.Kafka", str(self._config)]
        self._launch(argv, timeout)

    def restart(self, timeout: float = 60.0) -> None:
        """Start the broker again on the same data directory and ports."""
        self.stop()
        self.start(timeout)
