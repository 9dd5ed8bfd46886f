"""The consumer's one-pass decode accepts exactly what the two-step decode accepts.

`EventRegistry.decode` validates the bytes against the registered types' envelopes in one
pass and falls back to the two steps (envelope, then payload) only to classify a failure.
A difference could only be the one pass accepting what the two steps refuse, or reading a
different payload: every contract example, and random damage to each, must agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.shared.contracts import default_registry
from cascade.shared.messaging.envelope import DecodeError, decode
from cascade.shared.messaging.registry import DecodedEvent, EventRegistry
from cascade.shared.testing.bus import make_steps, step_registry
from cascade.shared.testing.corebanking import EXAMPLES, example_event

pytestmark = pytest.mark.unit

REGISTRY = default_registry()
STEPS = step_registry()

# RFC 3339 text and near-misses: the one pass checks `time` with pydantic-core's regex
# engine, the two steps with Python's.
TIMES = [
    "2026-02-05T10:00:00+08:00",
    "2026-02-05 10:00:00.5-03:30",
    "2026-02-05t10:00:00z",
    "2026-02-05T10:00:00+0800",
    "2026-02-05T10:00Z",
    "2026-02-05T10:00:00",
    "2026-02-05T10:00:00Z\n",
    "x2026-02-05T10:00:00Z",
    "2026-02-05T10:00:00.Z",
    "١٢٣٤-02-05T10:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-02-05T24:00:00Z",
    "1770249600",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["2026-02-05", "2026-02-05T10:00:00Z", "CNY", "ACC-000123", "1.0", ""])
    | st.sampled_from(TIMES),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def outcome(registry: EventRegistry, value: bytes, key: bytes | None) -> tuple[str, Any]:
    """Returns what the one-pass decode made of a record, checked against the two steps."""
    try:
        one_pass: DecodedEvent | DecodeError = registry.decode(value, key=key)
    except DecodeError as error:
        one_pass = error
    try:
        two_steps: DecodedEvent | DecodeError = registry.validate(decode(value), key=key)
    except DecodeError as error:
        two_steps = error
    if isinstance(two_steps, DecodeError):
        assert isinstance(one_pass, DecodeError), "the one pass accepted a refused event"
        assert (one_pass.reason, str(one_pass)) == (two_steps.reason, str(two_steps))
        return "refused", two_steps.reason
    assert isinstance(one_pass, DecodedEvent), f"the one pass refused a good event: {one_pass}"
    assert type(one_pass.payload) is type(two_steps.payload)
    assert one_pass.payload == two_steps.payload
    assert one_pass.envelope.model_dump() == two_steps.envelope.model_dump()
    return "accepted", one_pass.payload


def damaged(body: dict[str, Any], path: list[str], value: Any, delete: bool) -> bytes:
    """Returns the body with the field at `path` replaced by `value`, or deleted."""
    node = body
    for name in path[:-1]:
        node = node[name]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return json.dumps(body, ensure_ascii=False).encode()


def field_paths(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Returns the path of every field of a body, nested objects included."""
    paths = []
    for name, value in body.items():
        paths.append([*prefix, name])
        if isinstance(value, dict):
            paths += field_paths(value, (*prefix, name))
    return paths


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_every_contract_example_decodes_the_same_in_one_pass(type_name: str) -> None:
    body = example_event(type_name)
    value = json.dumps(body, ensure_ascii=False).encode()
    assert outcome(REGISTRY, value, body["subject"].encode())[0] == "accepted"


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_a_damaged_event_gets_the_same_verdict_in_one_pass(
    type_name: str, data: st.DataObject, value: Any, delete: bool
) -> None:
    body = example_event(type_name)
    path = data.draw(st.sampled_from(field_paths(body)))
    record = damaged(body, path, value, delete)
    outcome(REGISTRY, record, str(example_event(type_name)["subject"]).encode())


def test_a_wrong_key_is_an_identity_mismatch_in_one_pass() -> None:
    step = make_steps(1, 1)[0]
    assert outcome(STEPS, step.to_bytes(), b"ACC-other") == ("refused", "identity_mismatch")


@pytest.mark.parametrize(
    "value",
    [None, b"", b"[1]", b"\xff", b'{"specversion": "1.0"}', b'{"type": "nope.v1", "data": {}}'],
)
def test_records_that_are_not_events_are_classified_as_before(value: bytes | None) -> None:
    with pytest.raises(DecodeError) as one_pass:
        STEPS.decode(value, key=b"ACC-00000")
    with pytest.raises(DecodeError) as two_steps:
        STEPS.validate(decode(value), key=b"ACC-00000")
    assert one_pass.value.reason == two_steps.value.reason


@pytest.mark.parametrize("time", [*TIMES, 0, 1770249600.5, None])
def test_an_event_time_gets_the_same_verdict_in_one_pass(time: Any) -> None:
    body = json.loads(make_steps(1, 1)[0].to_bytes())
    verdict, _ = outcome(STEPS, damaged(body, ["time"], time, delete=False), b"ACC-00000")
    assert verdict == ("accepted" if time in TIMES[:3] else "refused")
