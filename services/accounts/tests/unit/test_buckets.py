"""Delinquency buckets: Fineract-style DPD ranges, checked loudly when configured."""

from __future__ import annotations

import pytest

from cascade.accounts.domain.buckets import (
    DEFAULT_BUCKETS,
    BucketConfigError,
    BucketSet,
    DelinquencyRange,
)

pytestmark = pytest.mark.unit

R = DelinquencyRange


@pytest.mark.parametrize(
    ("days_past_due", "label"),
    [
        (0, "current"),
        (1, "1-29"),
        (29, "1-29"),
        (30, "30-59"),
        (59, "30-59"),
        (60, "60-89"),
        (89, "60-89"),
        (90, "90-179"),
        (179, "90-179"),
        (180, "180+"),
        (10_000, "180+"),
    ],
)
def test_default_buckets_map_each_boundary_day_to_its_range(days_past_due: int, label: str) -> None:
    assert DEFAULT_BUCKETS.label_for(days_past_due) == label


def test_the_current_label_is_the_label_of_zero_days_past_due() -> None:
    assert DEFAULT_BUCKETS.current_label == "current"


def test_a_negative_day_count_has_no_bucket() -> None:
    with pytest.raises(ValueError, match="negative"):
        DEFAULT_BUCKETS.label_for(-1)


def test_ranges_given_out_of_order_are_sorted_by_their_minimum() -> None:
    buckets = BucketSet.of([R("late", 10), R("early", 1, 9), R("ok", 0, 0)])

    assert [r.label for r in buckets.ranges] == ["ok", "early", "late"]
    assert buckets.label_for(9) == "early"
    assert buckets.label_for(10) == "late"


def test_a_single_open_ended_range_from_zero_is_a_valid_configuration() -> None:
    buckets = BucketSet.of([R("all", 0)])

    assert buckets.label_for(0) == buckets.label_for(365) == "all"


@pytest.mark.parametrize(
    ("ranges", "problem"),
    [
        pytest.param(
            [R("current", 0, 0), R("a", 1, 30), R("b", 30, None)],
            "ranges 'a' and 'b' overlap",
            id="overlapping",
        ),
        pytest.param(
            [R("current", 0, 0), R("a", 1, 29), R("b", 31, None)],
            "days 30-30 fall in no range",
            id="gap",
        ),
        pytest.param(
            [R("a", 1, 29), R("b", 30, None)],
            "the first range must start at 0",
            id="first-min-not-zero",
        ),
        pytest.param(
            [R("current", 0, 0), R("a", 1, None), R("b", 30, None)],
            "only the last range may be open-ended; 'a' is not last",
            id="open-ended-not-last",
        ),
        pytest.param(
            [R("current", 0, 0), R("a", 1, 29)],
            "the last range must be open-ended",
            id="closed-last",
        ),
        pytest.param(
            [R("current", 0, 0), R("late", 1, 29), R("late", 30, None)],
            "range labels must be unique",
            id="duplicate-labels",
        ),
        pytest.param(
            [R("current", 0, 0), R("a", 1, 0), R("b", 1, None)],
            "range 'a' ends before it starts",
            id="max-before-min",
        ),
        pytest.param([], "at least one delinquency range is needed", id="empty"),
    ],
)
def test_an_unusable_configuration_is_rejected_with_a_message_naming_the_problem(
    ranges: list[DelinquencyRange], problem: str
) -> None:
    with pytest.raises(BucketConfigError) as raised:
        BucketSet.of(ranges, name="personal_loan buckets")

    assert problem in str(raised.value)
    assert str(raised.value).startswith("personal_loan buckets: ")


def test_a_bucket_config_error_is_a_value_error_so_start_up_fails_on_it() -> None:
    assert issubclass(BucketConfigError, ValueError)
