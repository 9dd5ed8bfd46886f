"""How a topic on the broker is compared with its declaration, and how long it keeps records."""

from __future__ import annotations

import pytest

from cascade.shared.messaging.topic_drift import TopicOnBroker, differences
from cascade.shared.messaging.topology import (
    DAY_MS,
    SEGMENT_ROLL_MS,
    TopicSpec,
    inbox_keep_ms,
    topic,
)

pytestmark = pytest.mark.unit

SPEC = TopicSpec("ledger.v1", owner="accounts", partitions=6, retention_ms=DAY_MS, description="")
AS_DECLARED = {"retention.ms": str(DAY_MS), "cleanup.policy": "delete", "segment.ms": "604800000"}


def test_a_topic_as_declared_has_no_drift() -> None:
    assert differences(SPEC, TopicOnBroker("ledger.v1", 6, AS_DECLARED)) == []


def test_each_difference_is_named_with_both_values() -> None:
    configs = {"retention.ms": "-1", "cleanup.policy": "delete"}  # segment.ms not set
    found = TopicOnBroker("ledger.v1", 12, configs)

    assert differences(SPEC, found) == [
        "partitions 12, declared 6",
        f"retention.ms -1, declared {DAY_MS}",
        "segment.ms the broker's default, declared 604800000",
    ]
    assert differences(SPEC, None) == ["missing on the broker"]


def test_a_record_lives_as_long_as_the_broker_keeps_it() -> None:
    longer = TopicOnBroker("ledger.v1", 6, {**AS_DECLARED, "retention.ms": str(9 * DAY_MS)})
    unstated = TopicOnBroker("ledger.v1", 6, {})  # the embedded broker's answer: nothing set

    assert longer.lifetime_ms(SPEC) == 9 * DAY_MS + SEGMENT_ROLL_MS
    assert unstated.lifetime_ms(SPEC) == DAY_MS + SEGMENT_ROLL_MS  # as declared


@pytest.mark.parametrize(
    "configs", [{"retention.ms": "-1"}, {"cleanup.policy": "compact"}], ids=["infinite", "compact"]
)
def test_a_topic_that_keeps_records_for_ever_has_no_lifetime(configs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="for ever"):
        TopicOnBroker("ledger.v1", 6, configs).lifetime_ms(SPEC)


def test_the_keep_adds_the_lifetimes_of_the_topic_the_dead_letters_and_the_replays() -> None:
    lifetimes = {
        "corebanking.events.v1": 100,
        "accounts.dead-letters.v1": 20,
        "accounts.replay.v1": 3,
    }

    assert inbox_keep_ms("accounts", "corebanking.events.v1", lifetimes.__getitem__) == 123
    # And the declared default is the declaration's: 30, 90 and 7 days, each plus the roll.
    assert inbox_keep_ms("accounts", "corebanking.events.v1") == sum(
        topic(name).retention_ms + SEGMENT_ROLL_MS for name in lifetimes
    )
