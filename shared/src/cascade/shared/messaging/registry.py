"""From a type string to the Pydantic model of its payload.

Platform events carry their major version in the type (`cascade.accounts.
delinquency-updated.v1`); the core-banking contract carries it in the topic name
(`corebanking.events.v1`). Payloads change only by adding optional fields; anything
else is a new major version, registered as a new type.

A consumer decodes a record in one pass: the bytes are validated against a union of the
registered types' envelopes, each with its payload model, chosen by `type`. Only a
record that fails it takes the two-step path (envelope, then payload), which says why.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model

from cascade.shared.messaging.envelope import (
    DecodeError,
    Envelope,
    WireTimestamp,
    decode,
    describe_validation_error,
)

_MAJOR = re.compile(r"^(?P<name>.+)\.v(?P<major>\d+)$")


@dataclass(frozen=True)
class EventType:
    """One registered event type and the model of its payload."""

    type: str
    model: builtins.type[BaseModel]
    # The payload field that must equal the envelope's subject (and so the Kafka key).
    subject_field: str | None = "account_id"
    description: str = ""


@dataclass(frozen=True)
class DecodedEvent:
    """An envelope whose payload validated against its registered model."""

    envelope: Envelope
    payload: BaseModel
    # The Kafka record it came from (a ConsumerRecord), for provenance; None if built in code.
    record: Any = None


class EventRegistry:
    """The registered event types; decoding against it classifies every bad event."""

    def __init__(self, types: Iterable[EventType] = ()) -> None:
        self._types: dict[str, EventType] = {}
        self._one_pass: TypeAdapter[Any] | None = None
        for event_type in types:
            self.register(event_type)

    def register(self, event_type: EventType) -> None:
        """Adds a type; registering one type twice is a programming error."""
        if event_type.type in self._types:
            raise ValueError(f"event type registered twice: {event_type.type}")
        self._types[event_type.type] = event_type
        self._one_pass = None

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: t.type))

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def get(self, type_name: str) -> EventType:
        """Returns a registered type; raises DecodeError for an unknown type or major."""
        found = self._types.get(type_name)
        if found is not None:
            return found
        match = _MAJOR.match(type_name)
        if match and any(
            (m := _MAJOR.match(known)) and m["name"] == match["name"] for known in self._types
        ):
            # The type is the sender's text: it goes to the dlt-event-type header, sanitised,
            # never into the message.
            raise DecodeError("unsupported_version", "the event type's major version is unknown")
        raise DecodeError("unknown_type", "the event type is not registered")

    def decode(
        self, value: bytes | None, key: bytes | None = None, record: Any = None
    ) -> DecodedEvent:
        """Returns the event in a Kafka record's value; raises DecodeError when it is bad."""
        if value is not None and self._types:
            try:
                typed = self._one_pass_adapter().validate_json(value)
            except ValidationError:
                pass  # bad somewhere: the two steps below find out where, and say so
            else:
                event_type = self._types[typed.type]
                return self._checked(event_type, typed, typed.payload, key, record)
        return self.validate(decode(value), key=key, record=record)

    def validate(
        self, envelope: Envelope, key: bytes | None = None, record: Any = None
    ) -> DecodedEvent:
        """Returns the event with its typed payload; raises DecodeError when it is bad."""
        event_type = self.get(envelope.type)
        try:
            payload = event_type.model.model_validate(envelope.data)
        except ValidationError as error:
            raise DecodeError("schema_invalid", describe_validation_error(error)) from error
        return self._checked(event_type, envelope, payload, key, record)

    @staticmethod
    def _checked(
        event_type: EventType,
        envelope: Envelope,
        payload: BaseModel,
        key: bytes | None,
        record: Any,
    ) -> DecodedEvent:
        if key is not None and key.decode("utf-8", "replace") != envelope.subject:
            raise DecodeError("identity_mismatch", "the Kafka key and the subject disagree")
        field = event_type.subject_field
        if field is not None and str(getattr(payload, field, None)) != envelope.subject:
            raise DecodeError("identity_mismatch", f"the subject and data.{field} disagree")
        return DecodedEvent(envelope, payload, record)

    def _one_pass_adapter(self) -> TypeAdapter[Any]:
        if self._one_pass is None:
            models = [_typed_envelope(t) for t in self._types.values()]
            if len(models) == 1:
                self._one_pass = TypeAdapter(models[0])
            else:
                # Built at run time from the registered types: a type checker cannot follow it.
                union: Any = Union[tuple(models)]  # noqa: UP007
                self._one_pass = TypeAdapter(Annotated[union, Field(discriminator="type")])
        return self._one_pass


def _typed_envelope(event_type: EventType) -> builtins.type[Envelope]:
    """Returns an Envelope of one type that also validates `data` into its payload model.

    `data` stays the plain JSON object, as on every Envelope; `payload` reads the same
    JSON object into the model and is never serialised.
    """
    only_this_type: Any = Literal[event_type.type]
    return create_model(
        f"Envelope[{event_type.type}]",
        __base__=Envelope,
        type=(only_this_type, ...),
        time=(WireTimestamp, ...),
        payload=(event_type.model, Field(validation_alias="data", exclude=True)),
    )
