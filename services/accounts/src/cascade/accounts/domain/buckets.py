"""Delinquency buckets: ranges of days past due, in Apache Fineract's shape.

A range has a label, a minimum and an optional maximum (days, inclusive); only the last
range may be open-ended. Ranges must not overlap and must leave no gap from 0 upwards,
so every DPD has exactly one bucket. A bad configuration fails at start-up, loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass


class BucketConfigError(ValueError):
    """The configured delinquency ranges are unusable; the message says which and why."""


@dataclass(frozen=True)
class DelinquencyRange:
    """DPD from `min_days` to `max_days` inclusive; `max_days` None is open-ended."""

    label: str
    min_days: int
    max_days: int | None = None

    def covers(self, days_past_due: int) -> bool:
        """Returns whether `days_past_due` falls in this range."""
        above_min = days_past_due >= self.min_days
        return above_min and (self.max_days is None or days_past_due <= self.max_days)


@dataclass(frozen=True)
class BucketSet:
    """The validated, ordered ranges of one product."""

    ranges: tuple[DelinquencyRange, ...]

    @classmethod
    def of(cls, ranges: Iterable[DelinquencyRange], *, name: str = "buckets") -> BucketSet:
        """Returns the ranges sorted and checked; raises BucketConfigError when unusable."""
        ordered = tuple(sorted(ranges, key=lambda r: r.min_days))
        _check(ordered, name)
        return cls(ordered)

    def label_for(self, days_past_due: int) -> str:
        """Returns the label of the range `days_past_due` falls in."""
        for delinquency_range in self.ranges:
            if delinquency_range.covers(days_past_due):
                return delinquency_range.label
        raise ValueError("days past due must not be negative")  # ranges cover 0 upwards

    @property
    def current_label(self) -> str:
        """Returns the label of DPD 0: an account that is not past due."""
        return self.label_for(0)


def _check(ranges: tuple[DelinquencyRange, ...], name: str) -> None:
    if not ranges:
        raise BucketConfigError(f"{name}: at least one delinquency range is needed")
    labels = [r.label for r in ranges]
    if len(set(labels)) != len(labels):
        raise BucketConfigError(f"{name}: range labels must be unique, got {labels}")
    if ranges[0].min_days != 0:
        raise BucketConfigError(f"{name}: the first range must start at 0 days past due")
    for delinquency_range in ranges:
        top = delinquency_range.max_days
        if top is not None and top < delinquency_range.min_days:
            raise BucketConfigError(
                f"{name}: range '{delinquency_range.label}' ends before it starts"
            )
    _check_neighbours(ranges, name)
    if ranges[-1].max_days is not None:
        raise BucketConfigError(f"{name}: the last range must be open-ended (no max_days)")


def _check_neighbours(ranges: tuple[DelinquencyRange, ...], name: str) -> None:
    for before, after in itertools.pairwise(ranges):
        if before.max_days is None:
            raise BucketConfigError(
                f"{name}: only the last range may be open-ended; '{before.label}' is not last"
            )
        if after.min_days <= before.max_days:
            raise BucketConfigError(f"{name}: ranges '{before.label}' and '{after.label}' overlap")
        if after.min_days != before.max_days + 1:
            raise BucketConfigError(
                f"{name}: days {before.max_days + 1}-{after.min_days - 1} fall in no range"
            )


DEFAULT_BUCKETS = BucketSet.of(
    [
        DelinquencyRange("current", 0, 0),
        DelinquencyRange("1-29", 1, 29),
        DelinquencyRange("30-59", 30, 59),
        DelinquencyRange("60-89", 60, 89),
        DelinquencyRange("90-179", 90, 179),
        DelinquencyRange("180+", 180, None),
    ],
    name="default buckets",
)
