"""The accounts API over a real database: one account, the list, history, auth, privacy."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.messaging.envelope import Envelope
from cascade.shared.testing.corebanking import CUSTOMER, CoreBanking

from .api_support import DUE, TODAY, close_days, feed, late_account, post_pause
from .conftest import Api

pytestmark = pytest.mark.integration


async def test_an_account_reads_as_in_the_issue_example(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-000123")

    response = await api.get("/v1/accounts/ACC-000123")

    assert response.status_code == 200
    body = response.json()
    example = {
        "account_id": "ACC-000123", "status": "delinquent", "days_past_due": 12,
        "bucket": "1-29", "arrears_minor": 150000, "currency": "CNY",
        "oldest_unpaid_due_date": "2026-02-05", "business_date": "2026-02-17",
    }  # fmt: skip
    assert {k: body[k] for k in example} == example
    assert (body["product"], body["customer_id"], body["credit_minor"]) == (
        "credit_card",
        "CUS-889",
        0,
    )
    assert body["installments"] == [
        {
            "installment_id": "INS-1",
            "due_date": "2026-02-05",
            "amount_minor": 150000,
            "paid_minor": 0,
            "unpaid_minor": 150000,
            "status": "unpaid",
            "past_due": True,
        }
    ]
    assert (body["payments"], body["pauses"]) == ([], [])


async def test_a_partial_payment_shows_what_each_installment_was_paid_and_where_it_went(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bank = CoreBanking("ACC-PART")
    await feed(
        sessions,
        [
            bank.opened(),
            bank.installment("INS-1", DUE, 150000),
            bank.installment("INS-2", date(2026, 3, 5), 150000),
            bank.payment("PAY-1", date(2026, 2, 8), 50000),
            bank.payment("PAY-BOUNCED", date(2026, 2, 9), 20000),
            bank.reversal("PAY-BOUNCED", date(2026, 2, 10)),
            bank.payment("PAY-LATER", date(2026, 2, 20), 30000),
        ],
    )
    await close_days(sessions, DUE)

    body = (await api.get("/v1/accounts/ACC-PART")).json()

    installments = {i["installment_id"]: i for i in body["installments"]}
    assert installments["INS-1"] == {
        "installment_id": "INS-1", "due_date": "2026-02-05", "amount_minor": 150000,
        "paid_minor": 50000, "unpaid_minor": 100000, "status": "partially_paid", "past_due": True,
    }  # fmt: skip
    assert (installments["INS-2"]["status"], installments["INS-2"]["past_due"]) == (
        "unpaid",
        False,
    )
    payments = {p["payment_id"]: p for p in body["payments"]}
    assert payments["PAY-1"]["status"] == "counted"
    assert payments["PAY-1"]["allocation"] == [{"installment_id": "INS-1", "amount_minor": 50000}]
    assert {k: payments["PAY-BOUNCED"][k] for k in ("status", "reversed_on", "allocation")} == {
        "status": "reversed",
        "reversed_on": "2026-02-10",
        "allocation": [],
    }
    assert (payments["PAY-LATER"]["status"], payments["PAY-LATER"]["allocation"]) == ("pending", [])
    past_due_unpaid = sum(i["unpaid_minor"] for i in body["installments"] if i["past_due"])
    assert body["arrears_minor"] == past_due_unpaid == 100000


async def test_an_unknown_account_is_404_on_every_route(api: Api) -> None:
    reads = [
        await api.get("/v1/accounts/ACC-NOPE"),
        await api.get("/v1/accounts/ACC-NOPE/delinquency-history"),
    ]
    writes = [
        await post_pause(api, "ACC-NOPE"),
        await api.post("/v1/accounts/ACC-NOPE/pauses/P-1/resume"),
    ]

    assert [r.status_code for r in reads + writes] == [404, 404, 404, 404]
    assert reads[0].json()["error"] == "no account with this id"


async def _seed_book(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Six delinquent accounts (L6 at 38 DPD, 30-59), one current, one closed on Feb 12."""
    envelopes: list[Envelope] = []
    for n in range(1, 9):
        bank = CoreBanking(f"ACC-L{n}")
        due = date(2026, 1, 10) if n == 6 else DUE
        envelopes += [bank.opened(), bank.installment("INS-1", due, 150000)]
    envelopes.append(CoreBanking("ACC-L7").payment("PAY-1", DUE, 150000))
    await feed(sessions, envelopes)
    await close_days(sessions, date(2026, 1, 10), date(2026, 2, 12))
    await feed(sessions, [CoreBanking("ACC-L8").closed(date(2026, 2, 12), "charged_off")])
    await close_days(sessions, date(2026, 2, 13))


async def _ids(api: Api, **params: str | int) -> list[str]:
    response = await api.get("/v1/accounts", **params)
    assert response.status_code == 200, response.text
    return [item["account_id"] for item in response.json()["items"]]


async def test_the_list_filters_by_status_and_bucket_and_pages_without_gaps_or_repeats(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed_book(sessions)

    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(3):
        more: dict[str, str] = {"cursor": cursor} if cursor else {}
        page = (await api.get("/v1/accounts", status="delinquent", limit=2, **more)).json()
        pages.append([item["account_id"] for item in page["items"]])
        cursor = page["next_cursor"]

    assert pages == [["ACC-L1", "ACC-L2"], ["ACC-L3", "ACC-L4"], ["ACC-L5", "ACC-L6"]]
    assert cursor is None
    assert await _ids(api, bucket="30-59") == ["ACC-L6"]
    assert await _ids(api, status="delinquent", bucket="1-29") == [f"ACC-L{n}" for n in range(1, 6)]
    assert await _ids(api, status="current") == ["ACC-L7"]
    assert await _ids(api) == [f"ACC-L{n}" for n in range(1, 9)]
    assert (await api.get("/v1/accounts", status="late")).status_code == 422


async def test_a_closed_account_keeps_its_figures_as_at_closing(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed_book(sessions)

    listed = (await api.get("/v1/accounts", status="closed")).json()["items"]
    body = (await api.get("/v1/accounts/ACC-L8")).json()

    assert [(i["account_id"], i["business_date"], i["days_past_due"]) for i in listed] == [
        ("ACC-L8", "2026-02-12", 7)
    ]
    assert (body["status"], body["days_past_due"], body["business_date"]) == (
        "closed",
        7,
        "2026-02-12",
    )
    assert (body["closed_on"], body["closure_reason"]) == ("2026-02-12", "charged_off")


@pytest.mark.parametrize("cursor", ["not*a*cursor", "A", "_w", "AA"])  # "AA" decodes to NUL
async def test_a_cursor_the_api_did_not_issue_is_400_with_what_to_do(api: Api, cursor: str) -> None:
    response = await api.get("/v1/accounts", cursor=cursor)

    assert response.status_code == 400
    assert "next_cursor" in response.json()["error"]


async def test_the_history_shows_entering_1_29_then_30_59(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-HIST")
    await close_days(sessions, TODAY + timedelta(days=1), date(2026, 3, 8))

    response = await api.get("/v1/accounts/ACC-HIST/delinquency-history")

    assert response.status_code == 200
    assert response.json() == {
        "account_id": "ACC-HIST",
        "buckets": [
            {"bucket": "1-29", "entered_on": "2026-02-06", "left_on": "2026-03-07"},
            {"bucket": "30-59", "entered_on": "2026-03-07", "left_on": None},
        ],
        "actions": [],
    }


@pytest.mark.parametrize(
    ("closed_on", "left_on"),
    [(date(2026, 2, 12), "2026-02-12"), (date(2026, 2, 1), "2026-02-06")],
    ids=["on-the-closure", "never-before-the-period-began"],
)
async def test_a_closed_accounts_open_period_ends_at_its_closure(
    api: Api, sessions: async_sessionmaker[AsyncSession], closed_on: date, left_on: str
) -> None:
    await late_account(sessions, "ACC-HCL")
    await feed(sessions, [CoreBanking("ACC-HCL").closed(closed_on, "charged_off")])
    await close_days(sessions, TODAY + timedelta(days=1), TODAY + timedelta(days=2))

    response = await api.get("/v1/accounts/ACC-HCL/delinquency-history")

    assert response.json()["buckets"] == [
        {"bucket": "1-29", "entered_on": "2026-02-06", "left_on": left_on}
    ]


async def test_a_bucket_entered_in_the_closing_batch_is_a_period_ended_by_the_closure(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    bank = CoreBanking("ACC-SAME")
    await feed(sessions, [bank.opened()])
    await close_days(sessions, DUE)
    await feed(
        sessions, [bank.installment("INS-1", DUE, 150000), bank.closed(TODAY, "charged_off")]
    )

    response = await api.get("/v1/accounts/ACC-SAME/delinquency-history")

    assert response.json()["buckets"] == [
        {"bucket": "1-29", "entered_on": "2026-02-17", "left_on": "2026-02-17"}
    ]


async def test_control_characters_in_ids_and_filters_are_refused_not_a_server_error(
    api: Api,
) -> None:
    account = await api.get("/v1/accounts/ACC%00X")
    bucket = await api.get("/v1/accounts", bucket="1-29\x00")
    history = await api.get("/v1/accounts/%01/delinquency-history")

    assert (account.status_code, bucket.status_code, history.status_code) == (422, 422, 422)


async def test_every_route_needs_a_bearer_token(api: Api) -> None:
    responses = [
        await api.client.get("/v1/accounts"),
        await api.client.get("/v1/accounts/ACC-1"),
        await api.client.get("/v1/accounts/ACC-1/delinquency-history"),
        await api.client.post("/v1/accounts/ACC-1/pauses", json={}),
        await api.client.post("/v1/accounts/ACC-1/pauses/P-1/resume"),
    ]

    assert [r.status_code for r in responses] == [401] * 5


async def test_no_response_carries_the_customers_personal_data(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-PII")
    await post_pause(api, "ACC-PII")

    bodies = [
        (await api.get("/v1/accounts/ACC-PII")).text,
        (await api.get("/v1/accounts")).text,
        (await api.get("/v1/accounts/ACC-PII/delinquency-history")).text,
    ]

    personal = ("full_name", "national_id", "phone", "email")
    for body in bodies:
        for field in (*personal, "postal_address"):
            assert field not in body
        for value in (*(CUSTOMER[f] for f in personal), CUSTOMER["postal_address"]["city"]):
            assert value not in body
    assert "CUS-889" in bodies[0]
