"""Crash points for the fault tests (reliability matrix, "Crash points").

`CASCADE_CRASH_AT=<point>` makes the process SIGKILL itself the N-th time it reaches that
point (`CASCADE_CRASH_AFTER=N`, default 1). Without the variable every call is a no-op.
"""

from __future__ import annotations

import os
import signal
from functools import cache

POINTS = frozenset(
    {
        "after_poll",
        "in_handler_before_db_commit",
        "after_db_commit_before_offset_commit",
        "after_offset_commit",
        "relay_before_send",
        "relay_after_kafka_ack_before_mark_sent",
    }
)

_hits: dict[str, int] = {}


@cache
def _armed() -> tuple[str | None, int]:
    point = os.environ.get("CASCADE_CRASH_AT")
    if point is not None and point not in POINTS:
        raise ValueError(f"CASCADE_CRASH_AT={point!r} is not one of {sorted(POINTS)}")
    return point, int(os.environ.get("CASCADE_CRASH_AFTER", "1"))


def crash_point(name: str) -> None:
    """Kills this process with SIGKILL when the armed crash point is reached."""
    point, after = _armed()
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= after:
        os.kill(os.getpid(), signal.SIGKILL)
