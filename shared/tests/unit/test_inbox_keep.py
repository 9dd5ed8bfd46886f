"""How long each consumer's inbox remembers an event id, from the topics' declarations."""

from __future__ import annotations

from dataclasses import replace
from unittest.mock import patch

import pytest

from cascade.shared.messaging.admin import new_topic
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
from cascade.shared.messaging.topology import (
    CONSUMING_SERVICES,
    DAY_MS,
    SEGMENT_ROLL_MS,
    TOPICS,
    consumed_by,
    inbox_keep_ms,
    inbox_keep_s,
    topic,
)

pytestmark = pytest.mark.unit

DAY_S = DAY_MS // 1000


def test_an_event_is_remembered_while_its_topic_or_a_replay_can_bring_it_back() -> None:
    # 30 days in the topic, 90 in the dead-letter topic, 7 in the replay topic, and up to
    # a 7-day segment roll past each.
    assert inbox_keep_ms("accounts", "corebanking.events.v1") == (30 + 90 + 7 + 3 * 7) * DAY_MS
    assert inbox_keep_ms("accounts", "corebanking.business-days.v1") == (365 + 118) * DAY_MS


def test_every_consumed_topic_has_its_time_in_seconds() -> None:
    for service in CONSUMING_SERVICES:
        keeps = inbox_keep_s(service)
        assert set(keeps) == set(consumed_by(service))
        assert all(seconds * 1000 == inbox_keep_ms(service, t) for t, seconds in keeps.items())


def test_the_default_for_rows_that_name_no_time_is_the_longest_of_all() -> None:
    longest = max(max(inbox_keep_s(service).values()) for service in CONSUMING_SERVICES)
    assert longest <= INBOX_KEEP_UNLISTED_S
    assert longest + 30 * DAY_S >= INBOX_KEEP_UNLISTED_S  # not kept for ever either


def test_a_topic_that_keeps_its_events_for_ever_has_no_inbox_time() -> None:
    compacted = replace(topic("corebanking.events.v1"), cleanup_policy="compact")
    with (
        patch("cascade.shared.messaging.topology.topic", return_value=compacted),
        pytest.raises(ValueError, match="for ever"),
    ):
        inbox_keep_ms("accounts", "corebanking.events.v1")


def test_every_topic_is_created_with_the_segment_roll_the_inbox_counts_on() -> None:
    for spec in TOPICS:
        configs = new_topic(spec, replication_factor=1).topic_configs
        assert configs["segment.ms"] == str(SEGMENT_ROLL_MS)
