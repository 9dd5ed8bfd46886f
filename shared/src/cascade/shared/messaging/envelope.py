"""The CloudEvents 1.0 envelope in structured JSON mode, as every Kafka record carries it.

Kafka key = `subject` (the account id), so one account's events stay in one partition and
in order. `correlationid` and `causationid` are CloudEvents extension attributes (names
are lower-case letters and digits only); they are optional on inbound events.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
)
from pydantic_core import core_schema

from cascade.shared.messaging.event_ids import new_event_id

CONTENT_TYPE = "application/cloudevents+json"

_RFC3339_PATTERN = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
_RFC3339 = re.compile(_RFC3339_PATTERN)


def _rfc3339_text(value: object) -> object:
    """Lets only RFC 3339 text through: pydantic alone would take Unix timestamps."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp string with an offset")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class _Rfc3339InRust:
    """The same rule for JSON input, checked by pydantic-core's own regex engine.

    `Timestamp` calls back into Python for every event, which cost about a fifth of the
    consumer's decoding. The consumer's one-pass decode uses this instead; the two-step
    decode (and its error messages) keeps `Timestamp`, and a test checks both agree.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        aware = handler(source)
        # Anchored: pydantic-core searches, where re.fullmatch must match the whole text.
        text = core_schema.str_schema(pattern=f"^(?:{_RFC3339_PATTERN})$")
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([text, aware]),
            python_schema=handler.generate_schema(Timestamp),
        )


WireTimestamp = Annotated[AwareDatetime, _Rfc3339InRust]


class Envelope(BaseModel):
    """One CloudEvent; `data` is the payload as JSON, validated by the registry's model."""

    # Unknown extra envelope attributes are allowed and ignored (tolerant reader).
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=200)
    time: Timestamp
    datacontenttype: str = "application/json"
    correlationid: str | None = Field(default=None, max_length=200)
    causationid: str | None = Field(default=None, max_length=200)
    data: dict[str, Any]

    @property
    def key(self) -> bytes:
        """Returns the Kafka key: the subject."""
        return self.subject.encode()

    def to_bytes(self) -> bytes:
        """Returns the structured-mode JSON body of the Kafka record."""
        return self.model_dump_json(exclude_none=True).encode()


class DecodeError(Exception):
    """A record that is not a CloudEvent this platform can read; never retried."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode(value: bytes | None) -> Envelope:
    """Returns the envelope in a Kafka record's value; raises DecodeError if it is not one."""
    if value is None:
        raise DecodeError("undecodable", "the record has no value")
    try:
        # pydantic-core parses the bytes itself: bad UTF-8, bad JSON, absurd nesting and
        # over-long integers all come back as validation errors, never as a crash.
        return Envelope.model_validate_json(value)
    except ValidationError as error:
        kinds = {(item["type"], item["loc"]) for item in error.errors()}
        if ("json_invalid", ()) in kinds:
            raise DecodeError("undecodable", "not UTF-8 JSON") from error
        if ("model_type", ()) in kinds:
            raise DecodeError("undecodable", "the JSON body is not an object") from error
        raise DecodeError("schema_invalid", describe_validation_error(error)) from error


def describe_validation_error(error: ValidationError) -> str:
    """Returns which fields failed and why, without echoing their values (they may be PII)."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]
    return "; ".join(problems[:10])


def new_envelope(
    *,
    type: str,
    source: str,
    subject: str,
    data: BaseModel,
    correlationid: str | None = None,
    causationid: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Returns a new envelope for a platform event."""
    return Envelope(
        specversion="1.0",
        id=event_id or new_event_id(),
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC),
        correlationid=correlationid,
        causationid=causationid,
        data=data.model_dump(mode="json", exclude_none=True),
    )
