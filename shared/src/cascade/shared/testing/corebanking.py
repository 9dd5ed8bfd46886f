"""The core-banking contract's own examples (corebanking-contract.md), for tests.

The contract writes "..." for the account id in some examples; they use ACCOUNT here.
"""

from __future__ import annotations

import copy
from typing import Any

from cascade.shared.contracts import corebanking as cb

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
