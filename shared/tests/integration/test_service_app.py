"""A kit-built service reports readiness truthfully and hides internal errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from cascade.shared.app import create_service_app
from cascade.shared.auth import Role, require_roles
from cascade.shared.infra.processes import find_free_port
from cascade.shared.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from cascade.shared.testing.tokens import LocalIssuer

pytestmark = pytest.mark.integration


def _failing_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/boom", dependencies=[require_roles(Role.OPERATOR)])
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM debtor -- /srv/app/handlers.py line 12")

    return router


@asynccontextmanager
async def _running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


def _app(tmp_path: Path, database_url: str, bootstrap: str) -> tuple[FastAPI, LocalIssuer]:
    issuer = LocalIssuer.create(tmp_path / "keys")
    settings = ServiceSettings(
        service_name="probe",
        auth=issuer.auth_settings,
        database=DatabaseSettings(url=SecretStr(database_url), connect_timeout_s=1.0),
        kafka=KafkaSettings(bootstrap_servers=bootstrap, request_timeout_ms=2_000),
    )
    return create_service_app(settings, routers=[_failing_router()]), issuer


async def test_ready_when_database_and_broker_answer(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    app, _ = _app(tmp_path, database_url, kafka_bootstrap_servers)
    async with _running(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_not_ready_when_the_database_is_unreachable(
    tmp_path: Path, kafka_bootstrap_servers: str
) -> None:
    closed_port = find_free_port()
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/nowhere"
    app, _ = _app(tmp_path, unreachable, kafka_bootstrap_servers)
    async with _running(app) as client:
        response = await client.get("/readyz")
        liveness = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unavailable", "broker": "ok"}
    assert liveness.status_code == 200


async def test_an_unexpected_error_returns_a_generic_body_with_a_correlation_id(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    app, issuer = _app(tmp_path, database_url, kafka_bootstrap_servers)
    async with _running(app) as client:
        response = await client.get(
            "/v1/boom",
            headers={
                "Authorization": f"Bearer {issuer.token(Role.OPERATOR)}",
                "X-Correlation-Id": "corr-42",
            },
        )

    assert response.status_code == 500
    assert response.json()["correlation_id"] == "corr-42"
    assert response.headers["x-correlation-id"] == "corr-42"
    for leak in ("SELECT", "Traceback", "handlers.py", "RuntimeError"):
        assert leak not in response.text


async def test_metrics_count_requests_by_route_template(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    app, _ = _app(tmp_path, database_url, kafka_bootstrap_servers)
    async with _running(app) as client:
        await client.get("/healthz")
        await client.get("/v1/boom")  # 401: no token
        metrics = (await client.get("/metrics")).text

    assert 'cascade_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    assert 'cascade_http_requests_total{method="GET",route="/v1/boom",status="401"} 1.0' in metrics
