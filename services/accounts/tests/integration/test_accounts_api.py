"""The accounts API over a real database: figures, facts, pages, history and pauses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.entrypoints.consumers import batch_handler
from cascade.accounts.main import create_app
from cascade.accounts.settings import AccountsSettings
from cascade.shared.auth import Role
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.settings import DatabaseSettings, KafkaSettings
from cascade.shared.testing.corebanking import CUSTOMER, CoreBanking, business_day_closed, decoded
from cascade.shared.testing.tokens import LocalIssuer

from .conftest import default_policies

pytestmark = pytest.mark.integration

DUE = date(2026, 2, 5)
TODAY = date(2026, 2, 17)  # the last business date closed in most tests: 12 days past DUE


@dataclass
class Api:
    client: httpx.AsyncClient
    issuer: LocalIssuer

    async def get(self, path: str, **params: str | int) -> httpx.Response:
        """Reads as a collector, the least privileged of the readers."""
        return await self.client.get(path, params=params, headers=self._auth(Role.COLLECTOR))

    async def post(
        self, path: str, body: dict[str, Any] | None = None, role: Role = Role.SUPERVISOR
    ) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self._auth(role))

    def _auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(role)}"}


@pytest_asyncio.fixture
async def api(
    tmp_path: Path, accounts_database: str, kafka_bootstrap_servers: str
) -> AsyncIterator[Api]:
    issuer = LocalIssuer.create(tmp_path / "keys")
    settings = AccountsSettings(
        auth=issuer.auth_settings,
        database=DatabaseSettings(url=SecretStr(accounts_database)),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers),
        # Seeded through the handler; the shared broker's core-banking topics are not ours.
        consume_events=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Api(client, issuer)


async def _feed(sessions: async_sessionmaker[AsyncSession], envelopes: Sequence[Envelope]) -> None:
    by_product = default_policies()
    handler = batch_handler(by_product, by_product["credit_card"])
    async with sessions() as session, session.begin():
        assert await handler(session, [decoded(e) for e in envelopes]) == []


async def _close_days(
    sessions: async_sessionmaker[AsyncSession], first: date, last: date = TODAY
) -> None:
    # One close per batch: a batch holding two closes fails in adapters/ageing.py (its temp
    # table `aged` is created once per close but dropped only at commit).
    day = first
    while day <= last:
        await _feed(sessions, [business_day_closed(day)])
        day += timedelta(days=1)


async def _late_account(sessions: async_sessionmaker[AsyncSession], account_id: str) -> None:
    """Seeds an account whose 150000 CNY installment due on DUE is unpaid at TODAY (12 DPD)."""
    bank = CoreBanking(account_id)
    await _feed(sessions, [bank.opened(), bank.installment("INS-1", DUE, 150000)])
    await _close_days(sessions, DUE)


async def _pause(api: Api, account_id: str, **changes: str) -> httpx.Response:
    """Pauses as a supervisor, from Feb 10 with no end unless `changes` say otherwise."""
    body = {"start_date": "2026-02-10", "reason": "hardship review"} | changes
    return await api.post(f"/v1/accounts/{account_id}/pauses", body)


async def _count(sessions: async_sessionmaker[AsyncSession], table: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608


async def test_an_account_reads_as_in_the_issue_example(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _late_account(sessions, "ACC-000123")

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
    await _feed(
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
    await _close_days(sessions, DUE)

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
        await _pause(api, "ACC-NOPE"),
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
    await _feed(sessions, envelopes)
    await _close_days(sessions, date(2026, 1, 10), date(2026, 2, 12))
    await _feed(sessions, [CoreBanking("ACC-L8").closed(date(2026, 2, 12), "charged_off")])
    await _close_days(sessions, date(2026, 2, 13))


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
    await _late_account(sessions, "ACC-HIST")
    await _close_days(sessions, TODAY + timedelta(days=1), date(2026, 3, 8))

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


async def test_a_pause_lowers_the_days_past_due_at_once(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _late_account(sessions, "ACC-P")

    created = await _pause(api, "ACC-P")
    body = (await api.get("/v1/accounts/ACC-P")).json()

    assert created.status_code == 201
    pause = created.json()
    assert {k: pause[k] for k in ("start_date", "end_date", "reason", "active")} == {
        "start_date": "2026-02-10",
        "end_date": None,
        "reason": "hardship review",
        "active": True,
    }
    # Feb 10 to Feb 17 (8 days) no longer count: 12 - 8.
    assert (body["days_past_due"], body["status"]) == (4, "delinquent")
    assert body["pauses"] == [pause]


async def test_an_overlapping_pause_is_409_naming_the_pause_it_overlaps(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _late_account(sessions, "ACC-O")
    first = await _pause(api, "ACC-O")

    second = await _pause(api, "ACC-O", start_date="2026-02-15", end_date="2026-02-20")

    assert second.status_code == 409
    assert second.json()["error"] == f"the pause overlaps pause {first.json()['pause_id']}"
    assert await _count(sessions, "delinquency_pause") == 1


async def test_a_resume_ends_the_pause_today_and_a_second_resume_is_409(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _late_account(sessions, "ACC-R")
    pause_id = (await _pause(api, "ACC-R")).json()["pause_id"]

    resumed = await api.post(f"/v1/accounts/ACC-R/pauses/{pause_id}/resume")
    again = await api.post(f"/v1/accounts/ACC-R/pauses/{pause_id}/resume")
    unknown = await api.post("/v1/accounts/ACC-R/pauses/P-NOPE/resume")
    history = (await api.get("/v1/accounts/ACC-R/delinquency-history")).json()

    assert resumed.status_code == 200
    assert (resumed.json()["end_date"], resumed.json()["active"]) == ("2026-02-18", False)
    assert (again.status_code, again.json()["error"]) == (409, "the pause has already ended")
    assert unknown.status_code == 404
    assert [(a["action"], a["end_date"], a["actor"]) for a in history["actions"]] == [
        ("pause", None, "test-user"),
        ("resume", "2026-02-18", "test-user"),
    ]


async def test_a_collector_cannot_pause_and_nothing_is_written(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _late_account(sessions, "ACC-C")
    outbox_before = await _count(sessions, "outbox_message")

    response = await api.post(
        "/v1/accounts/ACC-C/pauses",
        {"start_date": "2026-02-10", "reason": "hardship review"},
        role=Role.COLLECTOR,
    )

    assert response.status_code == 403
    assert await _count(sessions, "delinquency_pause") == 0
    assert await _count(sessions, "delinquency_action") == 0
    assert await _count(sessions, "outbox_message") == outbox_before


@pytest.mark.parametrize(
    "body",
    [
        {"start_date": "2026-02-10", "reason": "  "},
        {"reason": "x"},
        {"start_date": "2026-02-10", "reason": "nul \u0000 inside"},
    ],
)
async def test_a_pause_without_a_reason_or_start_is_not_valid(
    api: Api, body: dict[str, Any]
) -> None:
    response = await api.post("/v1/accounts/ACC-ANY/pauses", body)

    assert response.status_code == 422


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
    await _late_account(sessions, "ACC-PII")
    await _pause(api, "ACC-PII")

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
