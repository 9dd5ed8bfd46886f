"""How a topic on the broker is compared with its declaration, and how long it keeps records."""

from __future__ import annotations

import pytest

from cascade.shared.messaging.inbox_keep import INBOX_KEEP_MAX_S, keep_s
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
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


def on_broker(partitions: int, configs: dict[str, str], replicas: int = 1) -> TopicOnBroker:
    return TopicOnBroker("ledger.v1", partitions, replicas, configs, overrides={})


def test_a_topic_as_declared_has_no_drift() -> None:
    assert differences(SPEC, on_broker(6, AS_DECLARED)) == []


def test_each_difference_is_named_with_both_values() -> None:
    configs = {"retention.ms": "-1", "cleanup.policy": "delete"}  # segment.ms not set
    found = on_broker(12, configs)

    assert differences(SPEC, found) == [
        "partitions 12, declared 6",
        f"retention.ms -1, declared {DAY_MS}",
        "segment.ms the broker's default, declared 604800000",
    ]
    assert differences(SPEC, None) == ["missing on the broker"]


def test_production_topics_need_three_replicas_and_two_in_sync() -> None:
    one_copy = on_broker(6, {**AS_DECLARED, "min.insync.replicas": "1"})
    three_copies = on_broker(6, {**AS_DECLARED, "min.insync.replicas": "2"}, replicas=3)

    assert differences(SPEC, one_copy, replication_factor=3) == [
        "replicas 1, declared 3",
        "min.insync.replicas 1, declared 2",
    ]
    assert differences(SPEC, three_copies, replication_factor=3) == []
    assert differences(SPEC, one_copy) == []  # one copy is what was asked for


def test_a_record_lives_as_long_as_the_broker_keeps_it() -> None:
    longer = on_broker(6, {**AS_DECLARED, "retention.ms": str(9 * DAY_MS)})
    unstated = on_broker(6, {})  # the embedded broker's answer: nothing set

    assert longer.lifetime_ms(SPEC) == 9 * DAY_MS + SEGMENT_ROLL_MS
    assert unstated.lifetime_ms(SPEC) == DAY_MS + SEGMENT_ROLL_MS  # as declared


@pytest.mark.parametrize(
    "configs", [{"retention.ms": "-1"}, {"cleanup.policy": "compact"}], ids=["infinite", "compact"]
)
def test_a_topic_that_keeps_records_for_ever_has_no_lifetime(configs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="for ever"):
        on_broker(6, configs).lifetime_ms(SPEC)


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


def test_the_keep_is_the_longer_of_the_declared_and_the_brokers() -> None:
    declared = {"a": 100, "b": 100}

    assert keep_s(declared, {"a": 150, "b": 50}) == {"a": 150, "b": 100}
    assert keep_s(declared, {}) == declared  # the broker said nothing


def test_a_topic_kept_for_ever_gets_the_longest_keep_and_the_others_their_own() -> None:
    longer_than_default = INBOX_KEEP_UNLISTED_S + 1000
    keeps = keep_s({"a": 100, "b": 100, "c": 100}, {"a": None, "b": longer_than_default})

    assert keeps == {"a": longer_than_default, "b": longer_than_default, "c": 100}
    assert keep_s({"a": 100}, {"a": None}) == {"a": INBOX_KEEP_UNLISTED_S}


def test_a_keep_too_long_for_the_statement_is_cut_to_what_it_takes() -> None:
    # retention.ms = Long.MAX_VALUE, as some tools write "for ever": the consumer's
    # statement takes the keep as a 32-bit integer, and would fail every batch.
    assert keep_s({"a": 100}, {"a": 2**63 // 1000}) == {"a": INBOX_KEEP_MAX_S}


def test_a_dead_letter_topic_must_take_the_largest_dead_letter() -> None:
    dead_letters = topic("accounts.dead-letters.v1")
    wanted = str(dead_letters.max_message_bytes)
    configs = {
        "retention.ms": str(dead_letters.retention_ms),
        "cleanup.policy": "delete",
        "segment.ms": "604800000",
    }
    at_default = TopicOnBroker(
        dead_letters.name, 1, 1, {**configs, "max.message.bytes": "1048588"}, {}
    )
    as_declared = TopicOnBroker(
        dead_letters.name, 1, 1, {**configs, "max.message.bytes": wanted}, {}
    )

    assert differences(dead_letters, at_default) == [
        f"max.message.bytes 1048588, declared {wanted}"
    ]
    assert differences(dead_letters, as_declared) == []
