"""The core-banking contract's own examples (corebanking-contract.md), for tests.

The contract writes "..." for the account id in some examples; they use ACCOUNT here.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cascade.shared.contracts import corebanking as cb
from cascade.shared.contracts import default_registry
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.registry import DecodedEvent

ACCOUNT = "ACC-000123"
EVENT_ID = "5f0c1c8e-8f7e-4a57-9a8e-2d1f3a0b9c11"
# fmt: off
CUSTOMER: dict[str, Any] = {
    "customer_id": "CUS-889", "full_name": "王小明", "national_id": "310101199001011234",
    "phone": "+8613800138000", "email": "xiaoming@example.com",
    "postal_address": {"lines": ["上海市黄浦区中山东一路 1 号"], "city": "上海",
                       "postal_code": "200002", "country": "CN"},
    "preferred_language": "zh-CN", "timezone": "Asia/Shanghai", "jurisdiction": "CN",
}
EXAMPLES: dict[str, dict[str, Any]] = {
    cb.ACCOUNT_OPENED: {"account_id": ACCOUNT, "product": "credit_card", "currency": "CNY",
                        "opened_on": "2026-01-05", "customer": CUSTOMER},
    cb.ACCOUNT_CONTACT_CHANGED: {"account_id": ACCOUNT, "customer": CUSTOMER},
    cb.INSTALLMENT_DUE: {"account_id": ACCOUNT, "installment_id": "INS-1",
                         "due_date": "2026-02-05", "amount_minor": 150000, "currency": "CNY"},
    cb.PAYMENT_RECEIVED: {"account_id": ACCOUNT, "payment_id": "PAY-1", "amount_minor": 50000,
                          "currency": "CNY", "value_date": "2026-02-08"},
    cb.PAYMENT_REVERSED: {"account_id": ACCOUNT, "payment_id": "PAY-1",
                          "reversed_on": "2026-02-10", "reason": "insufficient_funds"},
    cb.ACCOUNT_CLOSED: {"account_id": ACCOUNT, "closed_on": "2026-06-30", "reason": "paid_off"},
    cb.BUSINESS_DAY_CLOSED: {"business_date": "2026-02-06",
                             "closed_at": "2026-02-06T22:30:00+08:00"},
}
# fmt: on


def example_event(type_name: str) -> dict[str, Any]:
    """Returns the contract's example of a type as a whole structured-mode CloudEvent."""
    data = copy.deepcopy(EXAMPLES[type_name])
    return {
        "specversion": "1.0",
        "id": EVENT_ID,
        "source": "core-banking",
        "type": type_name,
        "subject": data.get("account_id", data.get("business_date")),
        "time": "2026-02-05T09:00:00+08:00",
        "datacontenttype": "application/json",
        "data": data,
    }


def _envelope(type_name: str, subject: str, data: dict[str, Any], time: datetime) -> Envelope:
    return Envelope(
        specversion="1.0",
        id=str(uuid.uuid4()),
        source="core-banking",
        type=type_name,
        subject=subject,
        time=time,
        data=data,
    )


@dataclass
class CoreBanking:
    """Builds core-banking events for one account, as the contract states them."""

    account_id: str
    product: str = "credit_card"
    currency: str = "CNY"
    customer: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(CUSTOMER))
    time: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def opened(self, opened_on: date = date(2026, 1, 5)) -> Envelope:
        """Returns `corebanking.account.opened`."""
        data = {
            "account_id": self.account_id,
            "product": self.product,
            "currency": self.currency,
            "opened_on": opened_on.isoformat(),
            "customer": self.customer,
        }
        return _envelope(cb.ACCOUNT_OPENED, self.account_id, data, self.time)

    def installment(
        self, installment_id: str, due: date, amount_minor: int, currency: str | None = None
    ) -> Envelope:
        """Returns `corebanking.installment.due`."""
        data = {
            "account_id": self.account_id,
            "installment_id": installment_id,
            "due_date": due.isoformat(),
            "amount_minor": amount_minor,
            "currency": currency or self.currency,
        }
        return _envelope(cb.INSTALLMENT_DUE, self.account_id, data, self.time)

    def payment(
        self, payment_id: str, value_date: date, amount_minor: int, currency: str | None = None
    ) -> Envelope:
        """Returns `corebanking.payment.received`."""
        data = {
            "account_id": self.account_id,
            "payment_id": payment_id,
            "amount_minor": amount_minor,
            "currency": currency or self.currency,
            "value_date": value_date.isoformat(),
        }
        return _envelope(cb.PAYMENT_RECEIVED, self.account_id, data, self.time)

    def reversal(
        self, payment_id: str, reversed_on: date, reason: str = "insufficient_funds"
    ) -> Envelope:
        """Returns `corebanking.payment.reversed`."""
        data = {
            "account_id": self.account_id,
            "payment_id": payment_id,
            "reversed_on": reversed_on.isoformat(),
            "reason": reason,
        }
        return _envelope(cb.PAYMENT_REVERSED, self.account_id, data, self.time)

    def contact_changed(self, customer: dict[str, Any], time: datetime) -> Envelope:
        """Returns `corebanking.account.contact-changed` booked at `time`."""
        data = {"account_id": self.account_id, "customer": customer}
        return _envelope(cb.ACCOUNT_CONTACT_CHANGED, self.account_id, data, time)

    def closed(self, closed_on: date, reason: str = "paid_off") -> Envelope:
        """Returns `corebanking.account.closed`."""
        data = {"account_id": self.account_id, "closed_on": closed_on.isoformat(), "reason": reason}
        return _envelope(cb.ACCOUNT_CLOSED, self.account_id, data, self.time)


def business_day_closed(business_date: date) -> Envelope:
    """Returns `corebanking.business-day.closed` for `business_date` (closed 22:30 +08:00)."""
    closed_at = datetime.combine(business_date, datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=14, minutes=30
    )
    data = {"business_date": business_date.isoformat(), "closed_at": closed_at.isoformat()}
    return _envelope(cb.BUSINESS_DAY_CLOSED, business_date.isoformat(), data, closed_at)


def decoded(envelope: Envelope) -> DecodedEvent:
    """Returns the event as the accounts consumer sees it after decoding (no Kafka record)."""
    return default_registry().validate(envelope, key=envelope.key)
