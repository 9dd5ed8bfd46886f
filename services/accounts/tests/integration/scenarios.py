"""Account histories for the order-independence tests: (arrival day, event) per account.

Day numbers count from DAY0. Events arrive on the day they are dated, as core banking
sends them in the normal course; `late` variants move some after the close that should
have counted them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from cascade.shared.messaging.envelope import Envelope
from cascade.shared.testing.corebanking import CUSTOMER, CoreBanking

DAY0 = date(2026, 2, 1)
LAST_DAY = 40

Arrivals = list[tuple[int, Envelope]]


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def on_time_payer(bank: CoreBanking) -> Arrivals:
    return [
        (0, bank.opened(day(0))),
        (0, bank.installment("INS-1", day(5), 100_000)),
        (0, bank.installment("INS-2", day(35), 100_000)),
        (5, bank.payment("PAY-1", day(5), 100_000)),
        (35, bank.payment("PAY-2", day(35), 100_000)),
    ]


def late_then_paid(bank: CoreBanking) -> Arrivals:
    return [
        (0, bank.opened(day(0))),
        (1, bank.installment("INS-1", day(5), 150_000)),
        (8, bank.payment("PAY-1", day(8), 150_000)),
    ]


def partial_payer(bank: CoreBanking) -> Arrivals:
    return [
        (0, bank.opened(day(0))),
        (0, bank.installment("INS-1", day(5), 100_000)),
        (0, bank.installment("INS-2", day(20), 100_000)),
        (7, bank.payment("PAY-1", day(7), 60_000)),
        (25, bank.payment("PAY-2", day(25), 40_000)),
    ]


def reversed_payment(bank: CoreBanking) -> Arrivals:
    return [
        (0, bank.opened(day(0))),
        (0, bank.installment("INS-1", day(5), 100_000)),
        (4, bank.payment("PAY-1", day(4), 100_000)),
        (9, bank.reversal("PAY-1", day(9))),
        (12, bank.payment("PAY-2", day(12), 30_000)),
        (12, bank.reversal("PAY-2", day(12))),  # a reversal and its payment on one day
    ]


def overpayer(bank: CoreBanking) -> Arrivals:
    return [
        (0, bank.opened(day(0))),
        (0, bank.installment("INS-1", day(5), 100_000)),
        (0, bank.installment("INS-2", day(20), 100_000)),
        (5, bank.payment("PAY-1", day(5), 150_000)),
        (20, bank.payment("PAY-2", day(20), 30_000)),
    ]


def closed_in_arrears(bank: CoreBanking) -> Arrivals:
    newer = dict(CUSTOMER, phone="+8613900139000")
    newest = dict(CUSTOMER, phone="+8613700137000")
    return [
        (0, bank.opened(day(0))),
        (0, bank.installment("INS-1", day(5), 80_000)),
        (3, bank.contact_changed(newer, datetime(2026, 2, 4, 10, tzinfo=UTC))),
        (3, bank.contact_changed(newest, datetime(2026, 2, 4, 11, tzinfo=UTC))),
        (15, bank.closed(day(15), "charged_off")),
    ]


SCENARIOS: dict[str, Callable[[CoreBanking], Arrivals]] = {
    "on-time": on_time_payer,
    "late": late_then_paid,
    "partial": partial_payer,
    "reversal": reversed_payment,
    "overpaid": overpayer,
    "closed": closed_in_arrears,
}
