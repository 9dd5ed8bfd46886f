"""The consumer's fallback order, and the inbox time of a batch, from a batch's events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import SimpleNamespace

import pytest

from cascade.shared.messaging.batch import checked_order
from cascade.shared.messaging.inbox import longest_keep_s
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
from cascade.shared.testing.bus import make_steps, step_registry

pytestmark = pytest.mark.unit


def _events(topics: Sequence[str]) -> list[DecodedEvent]:
    registry = step_registry()
    return [
        replace(registry.validate(step), record=SimpleNamespace(topic=topic))
        for step, topic in zip(make_steps(len(topics), 10), topics, strict=True)
    ]


def test_the_handlers_order_is_used_when_it_keeps_every_event() -> None:
    events = _events(["t"] * 3)
    assert list(checked_order(lambda batch: batch[::-1], events)) == events[::-1]


def test_an_order_that_drops_or_repeats_an_event_is_not_used() -> None:
    events = _events(["t"] * 3)
    assert checked_order(lambda batch: batch[1:], events) == events
    assert checked_order(lambda batch: [*batch, batch[0]], events) == events


def test_an_order_that_fails_is_not_used() -> None:
    def broken(_: Sequence[DecodedEvent]) -> list[DecodedEvent]:
        raise AssertionError("not a close")

    events = _events(["t"] * 3)
    assert checked_order(broken, events) == events


def test_a_batch_is_kept_as_long_as_its_longest_topic_needs() -> None:
    keep = {"short": 60, "long": 3_600}
    assert longest_keep_s(_events(["short", "short"]), keep) == 60
    assert longest_keep_s(_events(["short", "long"]), keep) == 3_600
    assert longest_keep_s(_events(["short", "not-declared"]), keep) == INBOX_KEEP_UNLISTED_S
