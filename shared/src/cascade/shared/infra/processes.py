"""Process helpers for local infrastructure: free ports, detached children, deadlines.

The servers started here must outlive the command that started them (`cascade up` runs
in one process, `cascade down` in another), so they run in their own session and are
found again through pid and port files in their data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import psutil

LOCALHOST = "127.0.0.1"

# Popen handles of the children this process spawned, kept so that they are reaped
# (no zombies, no "still running" ResourceWarning when a handle is garbage-collected).
_children: dict[int, subprocess.Popen[bytes]] = {}


def find_free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | None, lines: int = 40) -> str:
    """Return the last `lines` lines of a text file, or '' when it is missing."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _timeout_error(what: str, timeout: float, log_file: Path | None) -> TimeoutError:
    message = f"timed out after {timeout:.1f}s waiting for {what}"
    log_tail = tail(log_file)
    if log_tail:
        message += f"\n--- last lines of {log_file} ---\n{log_tail}"
    return TimeoutError(message)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    log_file: Path | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `predicate` until it is true; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise _timeout_error(what, timeout, log_file)
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    what: str,
    *,
    interval: float = 0.1,
) -> None:
    """Await `predicate` until it is true; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() >= deadline:
            raise _timeout_error(what, timeout, None)
        await asyncio.sleep(interval)


def spawn_detached(
    argv: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with stdout and stderr appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        # Own session: no terminal signals from the parent, and the whole process
        # group can be signalled at once; the child may outlive this process.
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    _children[process.pid] = process
    return process


def pid_alive(pid: int) -> bool:
    """Return whether `pid` is a live process (a fully exited zombie counts as gone)."""
    child = _children.get(pid)
    if child is not None:
        # waitpid succeeds only once every thread has exited and released its sockets.
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.Error:
        return False
    # A zombie thread-group leader may still have threads exiting (holding ports).
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def pid_matches(pid: int, marker: str) -> bool:
    """Return whether `pid` is alive and `marker` appears in its command line."""
    if not pid_alive(pid):
        return False
    try:
        return any(marker in arg for arg in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session, so its group holds every helper it forked.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_process(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group of `pid`, SIGKILL it after `timeout`; return when gone."""
    if not pid_alive(pid):
        return
    _signal_group(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} to exit on SIGTERM")
    except TimeoutError:
        kill9(pid)


def kill9(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL the process group of `pid` and return when the process is gone."""
    _signal_group(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} to die on SIGKILL")


def read_pid_file(path: Path) -> int | None:
    """Return the pid stored in `path`, or None when the file is missing or garbled."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    """Store `pid` in `path` atomically."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(f"{pid}\n")
    scratch.replace(path)


def load_or_pick_ports(path: Path, fixed: Mapping[str, int | None]) -> dict[str, int]:
    """Return named ports: fixed ones, else those persisted in `path`, else free ones."""
    saved: dict[str, int] = {}
    if path.exists():
        saved = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    ports: dict[str, int] = {}
    for name, port in fixed.items():
        chosen = port or saved.get(name)
        while chosen is None or chosen in ports.values():
            chosen = find_free_port()
        ports[name] = chosen
    if ports != saved:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return ports
