"""Platform event ids are UUID version 7: valid, unique, and ordered by their millisecond."""

from __future__ import annotations

import time
import uuid

import pytest

from cascade.shared.messaging import event_ids
from cascade.shared.messaging.envelope import new_envelope
from cascade.shared.messaging.event_ids import new_event_id
from cascade.shared.testing.bus import STEP_RECORDED, StepRecorded


def unix_ms(event_id: str) -> int:
    return uuid.UUID(event_id).int >> 80


def test_an_event_id_is_a_version_7_uuid_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000

    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= unix_ms(str(parsed)) <= after


@pytest.mark.parametrize("now_ms", [0, 1, 1_764_000_000_000, (1 << 48) - 1])
def test_the_timestamp_survives_the_version_and_variant_bits(
    monkeypatch: pytest.MonkeyPatch, now_ms: int
) -> None:
    monkeypatch.setattr(event_ids, "_now_ns", lambda: now_ms * 1_000_000 + 999_999)

    parsed = uuid.UUID(new_event_id())

    assert unix_ms(str(parsed)) == now_ms
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_ids_of_later_milliseconds_sort_after_earlier_ones_as_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The indexes compare the ids as text: the order must hold for the strings themselves.
    clock = iter(range(1_764_000_000_000, 1_764_000_000_000 + 2_000))
    monkeypatch.setattr(event_ids, "_now_ns", lambda: next(clock) * 1_000_000)

    ids = [new_event_id() for _ in range(2_000)]

    assert ids == sorted(ids)


def test_ids_made_within_one_millisecond_are_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_ids, "_now_ns", lambda: 1_764_000_000_000_000_000)

    ids = {new_event_id() for _ in range(50_000)}

    assert len(ids) == 50_000


def test_new_envelopes_get_version_7_ids_unless_given_one() -> None:
    def envelope(event_id: str | None = None) -> str:
        data = StepRecorded(account_id="ACC-1", seq=0)
        made = new_envelope(
            type=STEP_RECORDED, source="tests", subject="ACC-1", data=data, event_id=event_id
        )
        return made.id

    assert uuid.UUID(envelope()).version == 7
    assert envelope("given-id") == "given-id"
