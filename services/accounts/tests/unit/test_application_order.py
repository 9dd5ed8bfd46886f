"""The accounts consumer's one order for a batch, shared by its handler and its fallback."""

from __future__ import annotations

from datetime import date

import pytest

from cascade.accounts.entrypoints.consumers import consumer_config, in_application_order
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed, decoded

pytestmark = pytest.mark.unit

D = date.fromisoformat


def test_account_events_come_before_the_closes_which_go_by_business_date() -> None:
    bank = CoreBanking("ACC-1")
    batch = [
        decoded(business_day_closed(D("2026-02-02"))),
        decoded(bank.payment("PAY-1", D("2026-02-01"), 10_000)),
        decoded(business_day_closed(D("2026-02-01"))),
        decoded(bank.installment("INS-1", D("2026-02-01"), 10_000)),
    ]

    ordered = in_application_order(batch)

    assert [event.envelope.id for event in ordered] == [
        batch[1].envelope.id,
        batch[3].envelope.id,
        batch[2].envelope.id,
        batch[0].envelope.id,
    ]


def test_the_consumer_falls_back_in_the_handlers_order() -> None:
    # The one-at-a-time fallback after a failed batch must not apply a close first.
    assert consumer_config().application_order is in_application_order
