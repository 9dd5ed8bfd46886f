"""structlog JSON logging with bound ids and one choke point that masks personal data.

Debtors' names, phone numbers, national ID numbers, e-mail and postal addresses must
never reach a log line (OWASP ASVS 7.1.1). Every record, ours and the libraries' (through
the stdlib bridge), passes `mask_personal_data` before it is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Field names whose values are personal data whatever they look like.
PERSONAL_FIELDS = frozenset(
    {
        "full_name",
        "name",
        "first_name",
        "last_name",
        "customer_name",
        "debtor_name",
        "national_id",
        "id_number",
        "phone",
        "phone_number",
        "mobile",
        "email",
        "postal_address",
        "address",
        "lines",
        "postal_code",
    }
)

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# PRC resident ID: 17 digits and a digit or X; US SSN; generic long digit runs go to phone.
_NATIONAL_ID = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|\d{3}-\d{2}-\d{4})(?![\dXx])")
# E.164 and local numbers with separators. Hyphen-joined words (UUIDs, ACC-000123) are not
# candidates; a candidate needs 9+ digits so that dates and times are left alone.
_PHONE = re.compile(r"(?<![\w-])\+?\d[\d \-().]{6,}\d(?![\w-])")
_PHONE_MIN_DIGITS = 9
# CR/LF and other control characters from user data must not forge log lines (ASVS 7.3.1).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\r|\n")


def mask_phone(value: str) -> str:
    """Returns a phone number with all but its last four digits hidden: `+86*******8000`."""
    digits = re.sub(r"\D", "", value)
    prefix = "+" if value.strip().startswith("+") else ""
    return prefix + "*" * max(len(digits) - 4, 0) + digits[-4:]


def _mask_phone_candidate(match: re.Match[str]) -> str:
    candidate = match.group(0)
    if sum(char.isdigit() for char in candidate) < _PHONE_MIN_DIGITS:
        return candidate
    return mask_phone(candidate)


def mask_text(text: str) -> str:
    """Returns `text` with e-mails, national IDs and phone numbers masked."""
    text = _EMAIL.sub("***@***", text)
    text = _NATIONAL_ID.sub("[national-id]", text)
    text = _PHONE.sub(_mask_phone_candidate, text)
    return _CONTROL.sub(" ", text)


def mask_value(key: str | None, value: Any) -> Any:
    """Returns `value` masked by its field name or, for free text, by its content."""
    if key is not None and key.lower() in PERSONAL_FIELDS and value is not None:
        if key.lower() in {"phone", "phone_number", "mobile"} and isinstance(value, str):
            return mask_phone(value)
        return "[redacted]"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(None, item) for item in value]
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}")
    return value


def mask_personal_data(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: masks personal data in every field of the record."""
    return {key: mask_value(key, value) for key, value in event_dict.items()}


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours; one copy is enough.
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors(service_name: str) -> list[Processor]:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service_name)
        return event_dict

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
        _drop_color_message,
        structlog.processors.format_exc_info,
        mask_personal_data,
    ]


def configure_logging(
    service_name: str,
    *,
    level: str = "INFO",
    json: bool = True,
    stream: TextIO | None = None,
) -> None:
    """Routes structlog and stdlib logging through one masking pipeline to `stream`."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _shared_processors(service_name)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def bind_context(**ids: str | None) -> None:
    """Binds ids (event_id, correlation_id, ...) to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def clear_context() -> None:
    """Forgets the ids bound by `bind_context` in the current task."""
    structlog.contextvars.clear_contextvars()


def get_logger(name: str | None = None) -> Any:
    """Returns a structlog logger."""
    return structlog.stdlib.get_logger(name)


__all__ = [
    "PERSONAL_FIELDS",
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "mask_personal_data",
    "mask_text",
    "mask_value",
]
