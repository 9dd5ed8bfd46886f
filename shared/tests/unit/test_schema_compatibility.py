"""A payload changes only by adding optional fields; anything else is a new major version.

`contracts.compatibility` tells the two apart by comparing the schema the code generates
with the committed one, and `cascade contracts generate` refuses to commit a break.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from cascade.shared.cli import main as cascade
from cascade.shared.contracts import corebanking as cb
from cascade.shared.contracts import default_registry
from cascade.shared.contracts.catalogue import (
    EVENTS_FOLDER,
    VersionBreakError,
    catalogue_drift,
    event_schema,
    write_catalogue,
)
from cascade.shared.contracts.compatibility import version_breaks
from cascade.shared.messaging.registry import EventType

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[3]

TYPE = "cascade.test.payment-noted.v1"


class Address(BaseModel):
    city: str


class Noted(BaseModel):
    """The committed version."""

    account_id: str
    amount_minor: int = Field(gt=0)
    note: str | None = None
    address: Address | None = None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return event_schema(EventType(TYPE, model))


def _breaks(model: type[BaseModel]) -> list[str]:
    return version_breaks(_schema(Noted), _schema(model))


def test_adding_optional_fields_and_rewording_keeps_the_version() -> None:
    class Added(BaseModel):
        """Reworded: descriptions are for people."""

        account_id: str = Field(description="The account the payment went to.")
        amount_minor: int = Field(gt=0)
        note: str | None = None
        address: Address | None = Field(default=None, deprecated=True)  # before v2 drops it
        channel: Literal["branch", "online"] | None = None
        booked_on: date | None = None

    assert _breaks(Added) == []


def test_enum_members_or_types_in_another_order_keep_the_version_one_less_breaks_it() -> None:
    class Channel(BaseModel):
        account_id: str
        amount_minor: int = Field(gt=0)
        note: str | None = None
        address: Address | None = None
        channel: Literal["branch", "online", "phone"]
        branch_code: int | str | None = None

    class Reordered(Channel):
        channel: Literal["phone", "online", "branch"]
        branch_code: str | int | None = None

    class Narrowed(Channel):
        channel: Literal["branch", "online"]

    committed = _schema(Channel)
    assert version_breaks(committed, _schema(Reordered)) == []
    assert version_breaks(committed, _schema(Narrowed)) == ["data.channel.enum: changed"]


def test_removing_a_field_breaks_the_version() -> None:
    class Removed(BaseModel):
        account_id: str
        amount_minor: int = Field(gt=0)
        address: Address | None = None

    assert _breaks(Removed) == ["data.note: removed"]


def test_adding_a_required_field_or_requiring_an_optional_one_breaks_the_version() -> None:
    class Required(BaseModel):
        account_id: str
        amount_minor: int = Field(gt=0)
        note: str
        address: Address | None = None
        currency: str

    assert _breaks(Required) == [
        "data.currency: added as required",
        "data.note: now required",
        "data.note.anyOf: removed",
        "data.note.default: removed",
        "data.note.type: added",
    ]


def test_changing_a_type_or_a_bound_breaks_the_version() -> None:
    class Retyped(BaseModel):
        account_id: str
        amount_minor: str
        note: str | None = None
        address: Address | None = None

    class Widened(BaseModel):
        account_id: str
        amount_minor: int = Field(ge=0)
        note: str | None = None
        address: Address | None = None

    assert _breaks(Retyped) == [
        "data.amount_minor.exclusiveMinimum: removed",
        "data.amount_minor.type: changed",
    ]
    assert _breaks(Widened) == [
        "data.amount_minor.exclusiveMinimum: removed",
        "data.amount_minor.minimum: added",
    ]


def test_a_nested_model_is_compared_too() -> None:
    class OtherAddress(BaseModel):
        town: str

    class Moved(BaseModel):
        account_id: str
        amount_minor: int = Field(gt=0)
        note: str | None = None
        address: OtherAddress | None = None

    breaks = _breaks(Moved)

    assert "$defs/Address: removed" in breaks


def test_every_schema_ever_committed_for_a_type_is_a_version_the_code_still_describes() -> None:
    """The check that regenerating cannot pass: the schema the code generates is compared
    with every version of the type's schema in the repository's history, so a break that
    was generated with --accept-breaks, or edited by hand, fails here once committed."""
    for event_type in default_registry():
        path = f"shared/schemas/{EVENTS_FOLDER}/{event_type.type}.json"
        generated = event_schema(event_type)
        for commit in _git("log", "--format=%H", "--", path).split():
            committed = json.loads(_git("show", f"{commit}:{path}"))
            assert version_breaks(committed, generated) == [], (event_type.type, commit)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_generate_refuses_a_break_and_check_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_catalogue(tmp_path)
    path = tmp_path / EVENTS_FOLDER / f"{cb.PAYMENT_RECEIVED}.json"
    schema = json.loads(path.read_text())
    # As if the committed version had a field the code has since dropped.
    schema["properties"]["data"]["properties"]["branch"] = {"type": "string"}
    path.write_text(json.dumps(schema))
    drifted = f"differs: events/{cb.PAYMENT_RECEIVED}.json"
    removed = f"{cb.PAYMENT_RECEIVED}: data.branch: removed"

    with pytest.raises(VersionBreakError, match=removed):
        write_catalogue(tmp_path)
    assert cascade(["contracts", "generate", "--directory", str(tmp_path)]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert catalogue_drift(tmp_path) == [f"{drifted} (breaks its version: {removed})"]

    write_catalogue(tmp_path, accept_breaks=True)  # a version no one consumes yet
    assert catalogue_drift(tmp_path) == []
