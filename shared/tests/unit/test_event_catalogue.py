"""The committed event catalogue (`shared/schemas/`) is what the code generates, and is right.

JSON Schemas and the AsyncAPI document are generated from the registry and the topology,
so a changed model or topic without a regenerated catalogue fails here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cascade.shared.contracts import corebanking as cb
from cascade.shared.contracts import default_registry
from cascade.shared.contracts.catalogue import (
    ASYNCAPI_FILE,
    catalogue_drift,
    render_catalogue,
    write_catalogue,
)
from cascade.shared.messaging.envelope import DecodeError
from cascade.shared.messaging.registry import EventRegistry, EventType
from cascade.shared.messaging.topology import TOPICS
from cascade.shared.testing.corebanking import EXAMPLES, example_event

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[3]
COMMITTED = REPO_ROOT / "shared" / "schemas"
ENVELOPE_REQUIRED = ["specversion", "id", "source", "type", "subject", "time", "data"]


def committed_schema(type_name: str) -> dict[str, Any]:
    """Return the committed JSON Schema of a type."""
    schema: dict[str, Any] = json.loads((COMMITTED / "events" / f"{type_name}.json").read_text())
    return schema


def asyncapi() -> dict[str, Any]:
    """Return the committed AsyncAPI document."""
    document: dict[str, Any] = json.loads((COMMITTED / ASYNCAPI_FILE).read_text())
    return document


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Return what a local `#/...` JSON pointer designates in the document."""
    assert ref.startswith("#/")
    target: Any = document
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_the_committed_catalogue_is_what_the_code_generates() -> None:
    drift = catalogue_drift(COMMITTED)
    assert not drift, f"shared/schemas/ is stale: {drift}; run `cascade contracts generate`"


def test_the_catalogue_renders_identically_every_time_as_sorted_indented_json() -> None:
    files = render_catalogue()
    assert files == render_catalogue()
    for text in files.values():
        canonical = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        assert text == canonical + "\n"


def test_write_catalogue_removes_stale_schemas_and_drift_names_each_difference(
    tmp_path: Path,
) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "corebanking.retired.json").write_text("{}\n")
    assert "extra: events/corebanking.retired.json" in catalogue_drift(tmp_path)
    written = write_catalogue(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(render_catalogue())
    assert catalogue_drift(tmp_path) == []
    (tmp_path / "events" / f"{cb.PAYMENT_RECEIVED}.json").write_text("{}\n")
    (tmp_path / ASYNCAPI_FILE).unlink()
    differs, missing = catalogue_drift(tmp_path)
    assert differs.startswith(f"differs: events/{cb.PAYMENT_RECEIVED}.json")
    assert missing == f"missing: {ASYNCAPI_FILE}"


def test_every_registered_type_has_a_committed_schema_of_the_whole_cloudevent() -> None:
    for event_type in default_registry():
        schema = committed_schema(event_type.type)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://cascade.dev/schemas/{event_type.type}.json"
        assert schema["required"] == ENVELOPE_REQUIRED
        assert schema["properties"]["type"]["const"] == event_type.type
        assert schema["properties"]["specversion"]["const"] == "1.0"
        assert schema["description"]


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_every_contract_example_carries_what_its_schema_requires(type_name: str) -> None:
    schema = committed_schema(type_name)
    assert set(schema["properties"]["data"]["required"]) <= set(EXAMPLES[type_name])
    assert set(ENVELOPE_REQUIRED) <= set(example_event(type_name))


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_every_contract_example_validates_against_its_committed_schema(type_name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        committed_schema(type_name), format_checker=jsonschema.FormatChecker()
    )
    assert list(validator.iter_errors(example_event(type_name))) == []


def test_the_asyncapi_document_is_version_3_with_a_channel_for_every_topic() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    channels = document["channels"]
    assert {channel["address"] for channel in channels.values()} == {t.name for t in TOPICS}
    for spec in TOPICS:
        channel = channels[spec.name]
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        assert sorted(channel["messages"]) == sorted(spec.event_types)


def test_the_asyncapi_document_has_a_message_for_every_registered_type() -> None:
    document = asyncapi()
    messages = document["components"]["messages"]
    assert sorted(messages) == sorted(t.type for t in default_registry())
    for name, message in messages.items():
        assert message["contentType"] == "application/cloudevents+json"
        assert message["payload"]["schema"] == committed_schema(name)
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert "subject" in message["bindings"]["kafka"]["key"]["description"]
    for channel in document["channels"].values():
        for ref in channel["messages"].values():
            assert resolve(document, ref["$ref"]) in messages.values()


def test_every_topic_has_a_send_operation_for_its_owner_and_a_receive_per_consumer() -> None:
    document = asyncapi()
    for spec in TOPICS:
        operations = [
            op
            for op in document["operations"].values()
            if resolve(document, op["channel"]["$ref"])["address"] == spec.name
        ]
        actions = sorted(op["action"] for op in operations)
        assert actions == sorted(["send"] + ["receive"] * len(spec.consumers))
        for op in operations:
            for ref in op["messages"]:
                assert resolve(document, ref["$ref"])["$ref"].endswith(tuple(spec.event_types))


class _Probe(BaseModel):
    account_id: str


def test_an_unregistered_major_version_of_a_registered_type_is_unsupported_version() -> None:
    registry = EventRegistry([*default_registry(), EventType("cascade.x.y.v1", _Probe)])
    with pytest.raises(DecodeError) as caught:
        registry.get("cascade.x.y.v2")
    assert caught.value.reason == "unsupported_version"
    with pytest.raises(DecodeError) as unknown:
        registry.get("cascade.x.z.v2")
    assert unknown.value.reason == "unknown_type"
