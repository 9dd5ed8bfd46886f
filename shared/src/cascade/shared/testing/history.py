"""The history checker of the fault tests (reliability matrix, "Harness").

Compares what was acknowledged as produced with the effects that were applied:
lost, duplicated and phantom effects, and per-key order violations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Produced:
    event_id: str
    key: str
    seq: int


@dataclass(frozen=True)
class HistoryReport:
    produced: int
    applied: int
    lost: int
    duplicated: int
    phantom: int
    order_violations: int

    def __str__(self) -> str:
        return (
            f"produced={self.produced} applied={self.applied} lost={self.lost} "
            f"duplicated={self.duplicated} phantom={self.phantom} "
            f"order_violations={self.order_violations}"
        )


def check_history(
    produced: Iterable[Produced], effects: Sequence[tuple[str, str, int]]
) -> HistoryReport:
    """Returns the checker's figures for acknowledged events and applied effects.

    `effects` are (source_event_id, key, seq) in the order they were applied. A key's
    order is violated when the first application of a step comes after the first
    application of a later step of the same key.
    """
    expected = {event.event_id: event for event in produced}
    counts = Counter(event_id for event_id, _, _ in effects)
    lost = sum(1 for event_id in expected if counts[event_id] == 0)
    duplicated = sum(count - 1 for event_id, count in counts.items() if count > 1)
    phantom = sum(1 for event_id in counts if event_id not in expected)
    return HistoryReport(
        produced=len(expected),
        applied=len(effects),
        lost=lost,
        duplicated=duplicated,
        phantom=phantom,
        order_violations=_order_violations(effects),
    )


def _order_violations(effects: Sequence[tuple[str, str, int]]) -> int:
    seen: set[str] = set()
    highest: dict[str, int] = {}
    violations = 0
    for event_id, key, seq in effects:
        if event_id in seen:
            continue  # a duplicate: counted as such, not as disorder
        seen.add(event_id)
        if seq < highest.get(key, -1):
            violations += 1
        highest[key] = max(highest.get(key, -1), seq)
    return violations


def offsets_beyond_database(
    committed: Mapping[Any, int], positions: Mapping[Any, Sequence[str]], in_db: Collection[str]
) -> int:
    """Counts the events below a committed offset that the database had not committed.

    `committed` maps a partition to the group's committed offset, `positions` a partition
    to its event ids in offset order, and `in_db` holds the ids the database had committed
    when the offsets were read (or later: an honest consumer commits offsets only after).
    """
    return sum(
        1
        for partition, offset in committed.items()
        for event_id in positions.get(partition, [])[:offset]
        if event_id not in in_db
    )
