"""Apache Kafka's runtime jars from Maven Central, cached once per user outside any clone.

The Apache download site is out of reach here, so the jars come from Maven Central and are
run with `java` (design/kafka-from-maven.md, sections 1 and 2).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cascade.shared.infra.processes import tail, wait_until

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the release's own log4j2 (design note, table 1.2)
SLF4J_VERSION = "1.7.36"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
_REQUIRED_JARS = (
    "kafka_2\\.13-",
    "kafka-server-\\d",
    "log4j-core-",
    "log4j-slf4j-impl-",
    "scala-library-",
)


class KafkaSetupError(RuntimeError):
    """Kafka's jars could not be fetched or the broker could not be started."""


def kafka_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Return the per-user cache directory for one Kafka version (outside any clone)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cascade" / f"kafka-{version}"


_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cascade</groupId>
  <artifactId>kafka-runtime-{version}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


def runtime_pom(version: str = KAFKA_VERSION) -> str:
    """Return a pom whose runtime dependencies are exactly what the broker needs."""
    log4j = "org.apache.logging.log4j"
    coordinates = [
        ("org.apache.kafka", "kafka_2.13", version),
        # The tarball adds these (releaseOnly); kafka_2.13's pom does not. log4j-slf4j-impl
        # is the SLF4J 1.x binding: without one the broker logs nothing at all.
        (log4j, "log4j-api", LOG4J_VERSION),
        (log4j, "log4j-core", LOG4J_VERSION),
        (log4j, "log4j-slf4j-impl", LOG4J_VERSION),
        # Pinned so that Maven's nearest-wins cannot pick an slf4j-api 2.x.
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
    ]
    dependencies = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in coordinates
    )
    return _POM.format(version=version, dependencies=dependencies)


def _missing_jars(lib: Path) -> list[str]:
    names = [p.name for p in lib.glob("*.jar")] if lib.is_dir() else []
    return [rx for rx in _REQUIRED_JARS if not any(re.match(rx, n) for n in names)]


@contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:

        def acquired() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(acquired, timeout, f"the lock {path}", interval=0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars(version: str = KAFKA_VERSION, timeout: float = 600.0) -> Path:
    """Return the directory of Kafka's runtime jars, fetching them with Maven once."""
    root = kafka_cache_dir(version)
    lib = root / "lib"
    if not _missing_jars(lib):
        return lib
    with _file_lock(root / ".lock", timeout):
        if not _missing_jars(lib):  # another process fetched them while we waited
            return lib
        _fetch_jars(root, lib, version, timeout)
    return lib


def _fetch_jars(root: Path, lib: Path, version: str, timeout: float) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaSetupError(
            "`mvn` (Apache Maven) is not on PATH: it is needed once to fetch Kafka's jars "
            "from Maven Central (e.g. `apt-get install maven`)"
        )
    pom = root / "pom.xml"
    pom.write_text(runtime_pom(version))
    scratch = root / f"lib.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    mvn_log = root / "mvn.log"
    argv = [mvn, "-B", "-q", "-f", str(pom), _DEPENDENCY_PLUGIN]
    argv += ["-DincludeScope=runtime", f"-DoutputDirectory={scratch}"]
    log.info("fetching Kafka %s jars from Maven Central into %s", version, lib)
    with mvn_log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    missing = _missing_jars(scratch)
    if result.returncode != 0 or missing:
        shutil.rmtree(scratch, ignore_errors=True)
        raise KafkaSetupError(
            f"mvn failed to fetch Kafka {version} (exit {result.returncode}, missing {missing})"
            f"\n--- last lines of {mvn_log} ---\n{tail(mvn_log)}"
        )
    shutil.rmtree(lib, ignore_errors=True)  # an incomplete earlier copy
    scratch.rename(lib)


def kafka_cache_bytes(version: str = KAFKA_VERSION) -> int:
    """Return the size in bytes of the cached Kafka jars (0 when not fetched)."""
    lib = kafka_cache_dir(version) / "lib"
    return sum(p.stat().st_size for p in lib.glob("*.jar")) if lib.is_dir() else 0
