"""Personal data never reaches a log line, whichever logger writes it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cascade.shared.logging import bind_context, clear_context, configure_logging, get_logger

pytestmark = pytest.mark.unit

FAKE_PHONE = "+8613912345678"
FAKE_NATIONAL_ID = "11010519491231002X"
FAKE_EMAIL = "canary.debtor@example.org"
FAKE_NAME = "Canary Zhang"


@pytest.fixture
def log_output() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("test-service", level="DEBUG", json=True, stream=stream)
    yield stream
    clear_context()
    logging.getLogger().handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_personal_data_in_message_and_fields_is_masked(log_output: io.StringIO) -> None:
    bind_context(correlation_id="corr-1", event_id="evt-1")
    get_logger("cascade.test").info(
        f"contacting debtor at {FAKE_PHONE} / {FAKE_EMAIL}, id {FAKE_NATIONAL_ID}",
        phone=FAKE_PHONE,
        customer={"full_name": FAKE_NAME, "national_id": FAKE_NATIONAL_ID, "email": FAKE_EMAIL},
    )

    output = log_output.getvalue()
    (line,) = _lines(log_output)
    assert line["correlation_id"] == "corr-1"
    assert line["event_id"] == "evt-1"
    assert line["service"] == "test-service"
    assert line["phone"] == "+*********5678"
    assert "***@***" in str(line["event"])
    assert "[national-id]" in str(line["event"])
    assert line["customer"] == {
        "full_name": "[redacted]",
        "national_id": "[redacted]",
        "email": "[redacted]",
    }
    for secret in (FAKE_PHONE, FAKE_NATIONAL_ID, FAKE_EMAIL, FAKE_NAME, "13912345678"):
        assert secret not in output


def test_stdlib_loggers_of_libraries_are_masked_too(log_output: io.StringIO) -> None:
    logging.getLogger("aiokafka.some.module").warning(
        "send failed for %s (%s)", FAKE_EMAIL, FAKE_PHONE
    )

    (line,) = _lines(log_output)
    assert line["logger"] == "aiokafka.some.module"
    assert line["level"] == "warning"
    assert FAKE_EMAIL not in log_output.getvalue()
    assert FAKE_PHONE not in log_output.getvalue()


def test_exception_text_is_masked(log_output: io.StringIO) -> None:
    try:
        raise ValueError(f"no account for phone {FAKE_PHONE}")
    except ValueError:
        get_logger("cascade.test").exception("lookup.failed")

    assert "lookup.failed" in log_output.getvalue()
    assert FAKE_PHONE not in log_output.getvalue()


def test_line_breaks_in_user_data_cannot_forge_log_lines(log_output: io.StringIO) -> None:
    get_logger("cascade.test").info("note", text='ok\n{"level": "info", "event": "forged"}')

    assert len(_lines(log_output)) == 1


def test_ids_and_dates_are_not_mistaken_for_personal_data(log_output: io.StringIO) -> None:
    event_id = "123e4567-e89b-12d3-a456-426614174000"
    get_logger("cascade.test").info(
        "payment applied", event_id=event_id, due_date="2026-02-05", account_id="ACC-000123"
    )

    (line,) = _lines(log_output)
    assert line["event_id"] == event_id
    assert line["due_date"] == "2026-02-05"
    assert line["account_id"] == "ACC-000123"
