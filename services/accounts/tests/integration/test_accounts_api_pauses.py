"""The accounts API over a real database: supervisors pause and resume delinquency."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.shared.auth import Role

from .api_support import count_rows, late_account, post_pause
from .conftest import Api

pytestmark = pytest.mark.integration


async def test_a_pause_lowers_the_days_past_due_at_once(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-P")

    created = await post_pause(api, "ACC-P")
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
    await late_account(sessions, "ACC-O")
    first = await post_pause(api, "ACC-O")

    second = await post_pause(api, "ACC-O", start_date="2026-02-15", end_date="2026-02-20")

    assert second.status_code == 409
    assert second.json()["error"] == f"the pause overlaps pause {first.json()['pause_id']}"
    assert await count_rows(sessions, "delinquency_pause") == 1


async def test_a_resume_ends_the_pause_today_and_a_second_resume_is_409(
    api: Api, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await late_account(sessions, "ACC-R")
    pause_id = (await post_pause(api, "ACC-R")).json()["pause_id"]

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
    await late_account(sessions, "ACC-C")
    outbox_before = await count_rows(sessions, "outbox_message")

    response = await api.post(
        "/v1/accounts/ACC-C/pauses",
        {"start_date": "2026-02-10", "reason": "hardship review"},
        role=Role.COLLECTOR,
    )

    assert response.status_code == 403
    assert await count_rows(sessions, "delinquency_pause") == 0
    assert await count_rows(sessions, "delinquency_action") == 0
    assert await count_rows(sessions, "outbox_message") == outbox_before


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
