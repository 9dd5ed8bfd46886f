"""The accounts settings refuse unusable buckets at start-up and build each product's policy."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cascade.accounts.settings import AccountsSettings
from cascade.shared.settings import AuthSettings

pytestmark = pytest.mark.unit
AUTH = AuthSettings(public_key_path="/dev/null")


def test_overlapping_ranges_stop_the_service_with_a_message_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ranges = [
        {"label": "current", "min_days": 0, "max_days": 0},
        {"label": "early", "min_days": 1, "max_days": 40},
        {"label": "late", "min_days": 30},
    ]
    monkeypatch.setenv("ACCOUNTS_BUCKETS", json.dumps({"mortgage": ranges}))

    with pytest.raises(
        ValidationError, match="buckets of mortgage: ranges 'early' and 'late' overlap"
    ):
        AccountsSettings(auth=AUTH)


def test_a_product_with_its_own_ranges_and_tolerance_gets_them_others_the_defaults() -> None:
    settings = AccountsSettings(
        auth=AUTH,
        buckets={
            "mortgage": [
                {"label": "ok", "min_days": 0, "max_days": 0},
                {"label": "watch", "min_days": 1, "max_days": 89},
                {"label": "default", "min_days": 90},
            ]
        },
        tolerances=[{"product": "mortgage", "currency": "CNY", "tolerance_minor": 1000}],
    )
    mortgage, card = settings.policy("mortgage"), settings.policy("credit_card")

    assert [mortgage.buckets.label_for(d) for d in (0, 1, 89, 90)] == [
        "ok",
        "watch",
        "watch",
        "default",
    ]
    assert (mortgage.tolerance("CNY"), mortgage.tolerance("USD")) == (1000, 0)
    assert [card.buckets.label_for(d) for d in (0, 29, 30, 180)] == [
        "current",
        "1-29",
        "30-59",
        "180+",
    ]
    assert card.tolerance("CNY") == 0
