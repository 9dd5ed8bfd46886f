"""Core banking's events decode exactly as the fixed inbound contract says.

Every example of `corebanking-contract.md` decodes into its model, and every bad event the
contract names is refused with a reason, without echoing personal data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cascade.shared.contracts import corebanking as cb
from cascade.shared.contracts import default_registry
from cascade.shared.messaging.envelope import DecodeError, decode
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.testing.corebanking import ACCOUNT, CUSTOMER, EXAMPLES, example_event

pytestmark = pytest.mark.unit

MODELS: dict[str, type[BaseModel]] = {
    cb.ACCOUNT_OPENED: cb.AccountOpened,
    cb.ACCOUNT_CONTACT_CHANGED: cb.AccountContactChanged,
    cb.INSTALLMENT_DUE: cb.InstallmentDue,
    cb.PAYMENT_RECEIVED: cb.PaymentReceived,
    cb.PAYMENT_REVERSED: cb.PaymentReversed,
    cb.ACCOUNT_CLOSED: cb.AccountClosed,
    cb.BUSINESS_DAY_CLOSED: cb.BusinessDayClosed,
}
PERSONAL = [
    "王小明",
    "310101199001011234",
    "8613800138000",
    "xiaoming@example.com",
    "上海",
    "200002",
]
ENVELOPE_REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "data")
REGISTRY = default_registry()

Mutation = Callable[[dict[str, Any]], None]


def event(type_name: str = cb.INSTALLMENT_DUE) -> dict[str, Any]:
    """Return a good structured-mode CloudEvent of a type, from the contract's example."""
    return example_event(type_name)


def receive(body: dict[str, Any] | bytes | None, key: str | None = None) -> DecodedEvent:
    """Decode a Kafka record as the consumers do; the key defaults to the subject."""
    if isinstance(body, dict):
        key = body.get("subject") if key is None else key
        body = json.dumps(body, ensure_ascii=False).encode()
    return REGISTRY.validate(decode(body), key=None if key is None else key.encode())


def refused(body: dict[str, Any] | bytes | None, key: str | None = None) -> DecodeError:
    """Return the DecodeError a bad record raises."""
    with pytest.raises(DecodeError) as caught:
        receive(body, key)
    return caught.value


def mutated(mutation: Mutation, type_name: str = cb.INSTALLMENT_DUE) -> dict[str, Any]:
    """Return a good event of a type changed by `mutation`."""
    body = event(type_name)
    mutation(body)
    return body


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_every_contract_example_decodes_into_its_model(type_name: str) -> None:
    decoded = receive(event(type_name))
    assert type(decoded.payload) is MODELS[type_name]
    assert decoded.payload.model_dump(mode="json") == EXAMPLES[type_name]


def test_amounts_dates_and_timestamps_decode_into_typed_values() -> None:
    installment = receive(event(cb.INSTALLMENT_DUE)).payload
    assert isinstance(installment, cb.InstallmentDue)
    assert (installment.amount_minor, installment.due_date) == (150000, date(2026, 2, 5))
    day = receive(event(cb.BUSINESS_DAY_CLOSED)).payload
    assert isinstance(day, cb.BusinessDayClosed)
    assert day.closed_at.utcoffset() == timedelta(hours=8)
    assert isinstance(day.closed_at, datetime)


def test_payload_models_are_frozen() -> None:
    payload = receive(event()).payload
    with pytest.raises(ValidationError):
        payload.amount_minor = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("attribute", ENVELOPE_REQUIRED)
def test_an_event_missing_a_required_envelope_attribute_is_schema_invalid(attribute: str) -> None:
    error = refused(mutated(lambda body: body.pop(attribute)), key=ACCOUNT)
    assert error.reason == "schema_invalid"
    assert attribute in str(error)


@pytest.mark.parametrize(
    ("type_name", "path"),
    [
        (cb.INSTALLMENT_DUE, ("amount_minor",)),
        (cb.INSTALLMENT_DUE, ("due_date",)),
        (cb.INSTALLMENT_DUE, ("currency",)),
        (cb.INSTALLMENT_DUE, ("installment_id",)),
        (cb.PAYMENT_RECEIVED, ("value_date",)),
        (cb.PAYMENT_REVERSED, ("reason",)),
        (cb.ACCOUNT_CLOSED, ("reason",)),
        (cb.ACCOUNT_OPENED, ("product",)),
        (cb.ACCOUNT_OPENED, ("customer", "national_id")),
        (cb.ACCOUNT_CONTACT_CHANGED, ("customer", "timezone")),
        (cb.BUSINESS_DAY_CLOSED, ("closed_at",)),
    ],
)
def test_an_event_missing_a_required_data_field_is_schema_invalid(
    type_name: str, path: tuple[str, ...]
) -> None:
    body = event(type_name)
    parent = body["data"]
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    error = refused(body)
    assert error.reason == "schema_invalid"
    assert path[-1] in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount_minor", "150000"),
        ("amount_minor", 150000.0),
        ("amount_minor", True),
        ("amount_minor", 0),
        ("amount_minor", -150000),
        ("amount_minor", 2**63),
        ("currency", "cny"),
        ("currency", "CN"),
        ("currency", "CNYY"),
        ("currency", "CNY\n"),
        ("due_date", "2026/02/05"),
        ("due_date", "20260205"),
        ("due_date", "2026-02-30"),
        ("due_date", "2026-02-05T00:00:00+08:00"),
        ("due_date", 1770249600),
        ("installment_id", 1),
        ("installment_id", ""),
    ],
)
def test_an_installment_with_a_wrong_value_or_json_type_is_schema_invalid(
    field: str, value: object
) -> None:
    error = refused(mutated(lambda body: body["data"].update({field: value})))
    assert error.reason == "schema_invalid"
    assert field in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("product", "overdraft"),
        ("customer.timezone", "Mars/Olympus_Mons"),
        ("customer.timezone", "asia/shanghai"),
        ("customer.timezone", "localtime"),
        ("customer.timezone", "+08:00"),
        ("customer.preferred_language", "fr"),
        ("customer.jurisdiction", "CHN"),
        ("customer.postal_address.country", "cn"),
    ],
)
def test_an_account_opened_with_an_invalid_value_is_schema_invalid(field: str, value: str) -> None:
    body = event(cb.ACCOUNT_OPENED)
    *parents, name = field.split(".")
    target = body["data"]
    for part in parents:
        target = target[part]
    target[name] = value
    error = refused(body)
    assert error.reason == "schema_invalid"
    assert name in str(error)


@pytest.mark.parametrize(
    ("type_name", "field", "value"),
    [
        (cb.ACCOUNT_CLOSED, "reason", "sold"),
        (cb.BUSINESS_DAY_CLOSED, "closed_at", "2026-02-06T22:30:00"),
        (cb.BUSINESS_DAY_CLOSED, "closed_at", 1770388200),
        (cb.BUSINESS_DAY_CLOSED, "closed_at", "1770388200"),
    ],
)
def test_a_closure_with_an_invalid_value_is_schema_invalid(
    type_name: str, field: str, value: object
) -> None:
    error = refused(mutated(lambda body: body["data"].update({field: value}), type_name))
    assert error.reason == "schema_invalid"


def test_an_unknown_type_is_unknown_type() -> None:
    error = refused(mutated(lambda body: body.update(type="corebanking.loan.restructured")))
    assert error.reason == "unknown_type"


@pytest.mark.parametrize("version", ["2.0", "0.3", 1.0])
def test_a_specversion_other_than_1_0_is_schema_invalid(version: object) -> None:
    error = refused(mutated(lambda body: body.update(specversion=version)))
    assert error.reason == "schema_invalid"
    assert "specversion" in str(error)


def test_a_kafka_key_that_differs_from_the_subject_is_an_identity_mismatch() -> None:
    assert refused(event(), key="ACC-999999").reason == "identity_mismatch"


def test_a_subject_that_differs_from_data_account_id_is_an_identity_mismatch() -> None:
    body = mutated(lambda body: body.update(subject="ACC-999999"))
    assert refused(body, key="ACC-999999").reason == "identity_mismatch"


def test_a_business_day_whose_key_subject_and_date_disagree_is_an_identity_mismatch() -> None:
    body = mutated(lambda body: body.update(subject="2026-02-07"), cb.BUSINESS_DAY_CLOSED)
    assert refused(body, key="2026-02-07").reason == "identity_mismatch"
    assert refused(event(cb.BUSINESS_DAY_CLOSED), key="2026-02-07").reason == "identity_mismatch"


@pytest.mark.parametrize(
    "value",
    [b'{"specversion": "1.0", "id": ', b"\xff\xfe\x00garbage", b"[1, 2]", b"", None],
)
def test_a_record_that_is_not_a_utf8_json_object_is_undecodable(value: bytes | None) -> None:
    assert refused(value, key=ACCOUNT).reason == "undecodable"


@pytest.mark.parametrize("value", [b'{"id": ' + b"1" * 5000 + b"}", b"[" * 100_000])
def test_a_record_json_cannot_represent_in_python_is_undecodable(value: bytes) -> None:
    assert refused(value, key=ACCOUNT).reason == "undecodable"


@pytest.mark.parametrize("value", [0, 1770249600.5, "1770249600"])
def test_an_envelope_time_that_is_not_rfc3339_text_is_schema_invalid(value: object) -> None:
    assert refused(mutated(lambda body: body.update(time=value))).reason == "schema_invalid"


def test_unknown_extra_envelope_attributes_are_accepted_and_ignored() -> None:
    body = mutated(lambda body: body.update(traceparent="00-abc-def-01", partitionkey="x"))
    decoded = receive(body)
    assert "traceparent" not in decoded.envelope.model_dump()


def test_unknown_extra_data_fields_are_accepted_and_ignored() -> None:
    body = event(cb.ACCOUNT_OPENED)
    body["data"]["branch"] = "SH-001"
    body["data"]["customer"]["segment"] = "retail"
    body["data"]["customer"]["postal_address"]["district"] = "黄浦区"
    decoded = receive(body)
    assert decoded.payload.model_dump(mode="json") == EXAMPLES[cb.ACCOUNT_OPENED]


@pytest.mark.parametrize("type_name", [cb.ACCOUNT_OPENED, cb.ACCOUNT_CONTACT_CHANGED])
@pytest.mark.parametrize("absent", ["drop", "null"])
def test_phone_email_and_postal_address_may_be_absent(type_name: str, absent: str) -> None:
    body = event(type_name)
    for field in ("phone", "email", "postal_address"):
        if absent == "drop":
            del body["data"]["customer"][field]
        else:
            body["data"]["customer"][field] = None
    customer = receive(body).payload.customer  # type: ignore[attr-defined]
    assert (customer.phone, customer.email, customer.postal_address) == (None, None, None)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda data: data.update(product="overdraft"),
        lambda data: data.update(currency="yuan"),
        lambda data: data["customer"].update(timezone="Asia/Shanghai-ish"),
        lambda data: data["customer"].update(jurisdiction="China"),
        lambda data: data["customer"].update(national_id=310101199001011234),
        lambda data: data["customer"].update(phone=8613800138000),
        lambda data: data["customer"].update(full_name=["王小明"]),
        lambda data: data["customer"]["postal_address"].update(lines="上海市黄浦区"),
    ],
)
def test_a_decode_error_never_echoes_personal_values(mutation: Mutation) -> None:
    body = event(cb.ACCOUNT_OPENED)
    mutation(body["data"])
    message = str(refused(body))
    personal = [*PERSONAL, "Asia/Shanghai-ish", "China", "yuan", "overdraft"]
    assert not [value for value in personal if value in message]


@pytest.mark.parametrize("amount", ["150000", 0, -150000, 1.5])
def test_a_wrong_amount_next_to_personal_data_is_refused_without_echoing_it(
    amount: object,
) -> None:
    body = event(cb.INSTALLMENT_DUE)
    # Personal data a producer might add (ignored extra fields) next to a bad amount.
    body["data"].update(amount_minor=amount, customer=CUSTOMER, full_name="王小明")
    body["data"].update(national_id="310101199001011234", phone="+8613800138000")
    error = refused(body)
    assert error.reason == "schema_invalid"
    assert "amount_minor" in str(error)
    assert not [value for value in PERSONAL if value in str(error)]
