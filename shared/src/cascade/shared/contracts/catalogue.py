"""The event catalogue, generated from the code: a JSON Schema per type and an AsyncAPI document.

The committed copy lives in `shared/schemas/`; a unit test fails when it drifts from what
the registry and the topology say, so the published contract cannot go stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cascade.shared.contracts import default_registry
from cascade.shared.contracts.compatibility import version_breaks
from cascade.shared.messaging.envelope import CONTENT_TYPE, Envelope
from cascade.shared.messaging.registry import EventRegistry, EventType
from cascade.shared.messaging.topology import TOPICS, TopicSpec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE_URL = "https://cascade.dev/schemas"
# AsyncAPI's default schema format is draft 07; ours are 2020-12, so messages say so.
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
KAFKA_BINDING_VERSION = "0.5.0"
EVENTS_FOLDER = "events"
ASYNCAPI_FILE = "asyncapi.json"
GENERATE_COMMAND = "cascade contracts generate"


def event_schema(event_type: EventType) -> dict[str, Any]:
    """Return the JSON Schema of a whole CloudEvent of this type, payload included."""
    schema = Envelope.model_json_schema()
    payload = event_type.model.model_json_schema()
    properties = schema["properties"]
    properties["type"] = {"const": event_type.type, "title": "Type", "type": "string"}
    properties["subject"]["description"] = _subject_description(event_type, "the Kafka key")
    # Refs in the payload point at `#/$defs/...`, so its definitions move to the root.
    definitions = payload.pop("$defs", None)
    properties["data"] = payload
    if definitions:
        schema["$defs"] = definitions
    schema.update(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": f"{SCHEMA_BASE_URL}/{event_type.type}.json",
            "title": event_type.type,
            "description": _description(event_type),
        }
    )
    return schema


def asyncapi_document(
    registry: EventRegistry, topics: Sequence[TopicSpec] = TOPICS
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document of every topic and registered event type."""
    _check_topic_types(registry, topics)
    operations: dict[str, Any] = {}
    for spec in topics:
        operations.update(_operations(spec))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Cascade events",
            "version": "1.0.0",
            "description": (
                "The Kafka topics of the Cascade debt-collection platform and the CloudEvents "
                f"on them. Generated from the code by `{GENERATE_COMMAND}`; do not edit."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": {spec.name: _channel(spec) for spec in topics},
        "operations": operations,
        "components": {"messages": {t.type: _message(t) for t in registry}},
    }


def render_catalogue(
    registry: EventRegistry | None = None, topics: Sequence[TopicSpec] = TOPICS
) -> dict[str, str]:
    """Return the catalogue's files: relative path to exact file text."""
    registry = registry if registry is not None else default_registry()
    files = {f"{EVENTS_FOLDER}/{t.type}.json": _dump(event_schema(t)) for t in registry}
    files[ASYNCAPI_FILE] = _dump(asyncapi_document(registry, topics))
    return dict(sorted(files.items()))


class VersionBreakError(Exception):
    """A regenerated event schema breaks the major version its committed schema describes."""


def write_catalogue(directory: Path, *, accept_breaks: bool = False) -> list[Path]:
    """Write the catalogue under `directory`, removing stale event schemas; return the files.

    Refuses, unless `accept_breaks`, to overwrite an event schema with one that breaks its
    version (contracts.compatibility): that change needs a new major version.
    """
    files = render_catalogue()
    breaks = _version_breaks(directory, files)
    if breaks and not accept_breaks:
        raise VersionBreakError(
            "these changes break the events' major version; give the type a new one "
            "(a new `.vN` type string, or a new topic for core banking's events), or "
            "regenerate with --accept-breaks if no one consumes the version yet: "
            + "; ".join(breaks)
        )
    (directory / EVENTS_FOLDER).mkdir(parents=True, exist_ok=True)
    for stale in _event_files(directory):
        if stale not in files:
            (directory / stale).unlink()
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def catalogue_drift(directory: Path) -> list[str]:
    """Return how the catalogue under `directory` differs from the generated one."""
    files = render_catalogue()
    drift = []
    for relative, text in files.items():
        path = directory / relative
        if not path.is_file():
            drift.append(f"missing: {relative}")
        elif path.read_text(encoding="utf-8") != text:
            breaks = _version_breaks(directory, {relative: text})
            broken = f" (breaks its version: {'; '.join(breaks)})" if breaks else ""
            drift.append(f"differs: {relative}{broken}")
    drift.extend(f"extra: {extra}" for extra in _event_files(directory) if extra not in files)
    return sorted(drift)


def _version_breaks(directory: Path, files: dict[str, str]) -> list[str]:
    """How the event schemas in `files` break the versions committed under `directory`."""
    breaks = []
    for relative, text in files.items():
        path = directory / relative
        if relative.startswith(f"{EVENTS_FOLDER}/") and path.is_file():
            try:
                committed = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                committed = None
            if not isinstance(committed, dict):
                continue  # not a schema: nothing to compare with, the drift names the file
            found = version_breaks(committed, json.loads(text))
            breaks += [f"{Path(relative).stem}: {change}" for change in found]
    return breaks


def _event_files(directory: Path) -> list[str]:
    folder = directory / EVENTS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(f"{EVENTS_FOLDER}/{path.name}" for path in folder.glob("*.json"))


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _description(event_type: EventType) -> str:
    return event_type.description or (event_type.model.__doc__ or "").strip() or event_type.type


def _subject_description(event_type: EventType, equals: str) -> str:
    field = event_type.subject_field
    if field is None:
        return f"The subject: equals {equals}."
    what = "The account id" if field == "account_id" else f"The `{field}`"
    return f"{what}: equals {equals} and `data.{field}`."


def _message(event_type: EventType) -> dict[str, Any]:
    key = {"type": "string", "description": _subject_description(event_type, "the `subject`")}
    return {
        "name": event_type.type,
        "title": event_type.model.__name__,
        "summary": _description(event_type),
        "contentType": CONTENT_TYPE,
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": event_schema(event_type)},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _channel(spec: TopicSpec) -> dict[str, Any]:
    kafka = {
        "topic": spec.name,
        "partitions": spec.partitions,
        "topicConfiguration": {
            "cleanup.policy": [spec.cleanup_policy],
            "retention.ms": spec.retention_ms,
        },
        "bindingVersion": KAFKA_BINDING_VERSION,
    }
    return {
        "address": spec.name,
        "description": spec.description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in spec.event_types},
        "bindings": {"kafka": kafka},
    }


def _operations(spec: TopicSpec) -> dict[str, Any]:
    channel = {"$ref": f"#/channels/{spec.name}"}
    messages = [{"$ref": f"#/channels/{spec.name}/messages/{name}"} for name in spec.event_types]
    operations = {
        f"{spec.owner}.send.{spec.name}": {
            "action": "send",
            "channel": channel,
            "summary": f"{spec.owner} publishes to {spec.name}.",
            "messages": messages,
        }
    }
    for consumer in spec.consumers:
        operations[f"{consumer}.receive.{spec.name}"] = {
            "action": "receive",
            "channel": channel,
            "summary": f"{consumer} consumes {spec.name}.",
            "messages": messages,
        }
    return operations


def _check_topic_types(registry: EventRegistry, topics: Iterable[TopicSpec]) -> None:
    for spec in topics:
        unknown = [name for name in spec.event_types if name not in registry]
        if unknown:
            raise ValueError(f"topic {spec.name} declares unregistered event types: {unknown}")
