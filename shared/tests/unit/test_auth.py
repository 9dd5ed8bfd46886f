"""Every route of every kit-built app refuses callers without a valid token and role.

The routes are read from the apps themselves, so a route added later is covered
without touching this file (reliability matrix S1, S2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from cascade.accounts.main import create_app as create_accounts_app
from cascade.accounts.settings import AccountsSettings
from cascade.cases.main import create_app as create_cases_app
from cascade.cases.settings import CasesSettings
from cascade.legal.main import create_app as create_legal_app
from cascade.legal.settings import LegalSettings
from cascade.notifications.main import create_app as create_notifications_app
from cascade.notifications.settings import NotificationsSettings
from cascade.shared.app import PUBLIC_PATHS, create_service_app
from cascade.shared.auth import Principal, Role, generate_keypair, require_roles
from cascade.shared.settings import ServiceSettings
from cascade.shared.testing.tokens import LocalIssuer

pytestmark = pytest.mark.unit


def _sample_router() -> APIRouter:
    router = APIRouter(prefix="/v1/samples")

    @router.get("/{sample_id}")
    async def read_sample(
        sample_id: str, who: Annotated[Principal, require_roles(Role.COLLECTOR, Role.SUPERVISOR)]
    ) -> dict[str, str]:
        return {"sample_id": sample_id, "subject": who.subject}

    @router.post("/{sample_id}/holds", dependencies=[require_roles(Role.SUPERVISOR)])
    async def hold_sample(sample_id: str) -> dict[str, str]:
        return {"sample_id": sample_id}

    @router.delete("/{sample_id}", dependencies=[require_roles(Role.OPERATOR)])
    async def delete_sample(sample_id: str) -> dict[str, str]:
        return {"sample_id": sample_id}

    return router


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer.create(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def apps(issuer: LocalIssuer) -> list[FastAPI]:
    auth = issuer.auth_settings
    kit_app = create_service_app(
        ServiceSettings(service_name="sample", auth=auth), routers=[_sample_router()]
    )
    apps = [
        kit_app,
        create_accounts_app(AccountsSettings(auth=auth)),
        create_cases_app(CasesSettings(auth=auth)),
        create_notifications_app(NotificationsSettings(auth=auth)),
        create_legal_app(LegalSettings(auth=auth)),
    ]
    for app in apps:
        # No lifespan here, so no database: an admitted request that needs one gets a 503.
        app.state.sessions = _no_database
    return apps


def _no_database() -> None:
    raise ConnectionError("no database in the unit tests")


Call = tuple[httpx.AsyncClient, str, str, frozenset[Role]]


def _protected_operations(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yields (method, path, operation) for every route outside the allow-list."""
    for path, operations in app.openapi()["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _required_roles(operation: dict[str, Any]) -> frozenset[Role]:
    requirements = operation.get("security") or []
    return frozenset(Role(role) for item in requirements for role in item.get("bearerAuth", []))


@pytest.fixture
async def calls(apps: list[FastAPI]) -> AsyncIterator[list[Call]]:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        for app in apps
    ]
    found = []
    for client, app in zip(clients, apps, strict=True):
        for method, path, operation in _protected_operations(app):
            concrete = re.sub(r"\{[^}]+\}", "S-1", path)
            found.append((client, method, concrete, _required_roles(operation)))
    yield found
    for client in clients:
        await client.aclose()


async def test_there_are_protected_routes_to_check(calls: list[Call]) -> None:
    assert len(calls) >= 3


def test_every_route_outside_the_allow_list_requires_a_role(apps: list[FastAPI]) -> None:
    for app in apps:
        for method, path, operation in _protected_operations(app):
            assert _required_roles(operation), f"{method} {path} has no require_roles"


def _alg_none_token(issuer: LocalIssuer) -> str:
    valid = issuer.token(Role.SUPERVISOR, Role.COLLECTOR, Role.OPERATOR)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{valid.split('.')[1]}."


def _foreign_signature_token(tmp_path: Path) -> str:
    other = LocalIssuer.create(tmp_path / "other-keys")
    return other.token(Role.SUPERVISOR, Role.COLLECTOR, Role.OPERATOR)


def _hs256_confusion_token(issuer: LocalIssuer) -> str:
    # RS/HS confusion: sign with HMAC using the public key as the shared secret.
    # PyJWT refuses to do this itself, so the token is put together by hand.
    secret = issuer.public_key_path.read_bytes()
    payload = issuer.token(Role.SUPERVISOR, Role.COLLECTOR, Role.OPERATOR).split(".")[1]
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_TOKENS = [
    "missing",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "bad-signature",
    "alg-none",
    "hs256-confusion",
    "garbage",
]


def _bad_header(kind: str, issuer: LocalIssuer, tmp_path: Path) -> dict[str, str]:
    every_role = (Role.SUPERVISOR, Role.COLLECTOR, Role.OPERATOR)
    token = {
        "missing": None,
        "expired": lambda: issuer.token(*every_role, expires_in=-timedelta(minutes=5)),
        "wrong-audience": lambda: issuer.token(*every_role, audience="another-bank-app"),
        "wrong-issuer": lambda: issuer.token(*every_role, issuer="https://evil.example"),
        "bad-signature": lambda: _foreign_signature_token(tmp_path),
        "alg-none": lambda: _alg_none_token(issuer),
        "hs256-confusion": lambda: _hs256_confusion_token(issuer),
        "garbage": lambda: "not-a-jwt",
    }[kind]
    return {} if token is None else {"Authorization": f"Bearer {token()}"}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_tokens_get_401_on_every_route(
    kind: str,
    issuer: LocalIssuer,
    tmp_path: Path,
    calls: list[Call],
) -> None:
    headers = _bad_header(kind, issuer, tmp_path)
    for client, method, path, _ in calls:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 401, (kind, method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "error" in response.json()


async def test_valid_token_without_the_role_gets_403_on_every_route(
    issuer: LocalIssuer, calls: list[Call]
) -> None:
    for client, method, path, roles in calls:
        outsider = next(role for role in Role if role not in roles)
        response = await client.request(method, path, headers=_auth(issuer.token(outsider)))
        assert response.status_code == 403, (method, path, response.text)


async def test_valid_token_with_the_role_is_admitted(
    issuer: LocalIssuer, calls: list[Call]
) -> None:
    for client, method, path, roles in calls:
        response = await client.request(method, path, headers=_auth(issuer.token(*roles)))
        # Admitted: past authentication and the role check, whatever the route then answers.
        assert response.status_code not in (401, 403), (method, path, response.text)


async def test_kit_endpoints_need_no_token(apps: list[FastAPI]) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=apps[0]), base_url="http://t"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_keypair_is_made_once(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path)
    content = first[1].read_bytes()
    assert generate_keypair(tmp_path) == first
    assert first[1].read_bytes() == content
