"""Tokens verified against the identity provider's JWKS endpoint, as a bank deploys it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from jwt.algorithms import RSAAlgorithm

from cascade.shared.app import create_service_app
from cascade.shared.auth import Role, generate_keypair, mint_token, require_roles
from cascade.shared.infra.processes import find_free_port
from cascade.shared.settings import AuthSettings, ServiceSettings

pytestmark = pytest.mark.unit

ISSUER, AUDIENCE, KEY_ID = "https://idp.bank.test", "cascade", "key-2026-11"


def _jwks(public_key_pem: bytes) -> bytes:
    key = json.loads(RSAAlgorithm.to_jwk(serialization.load_pem_public_key(public_key_pem)))
    key |= {"kid": KEY_ID, "use": "sig", "alg": "RS256"}
    return json.dumps({"keys": [key]}).encode()


@pytest.fixture
def identity_provider(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A JWKS endpoint on loopback; yields its URL and the matching private key."""
    private_path, public_path = generate_keypair(tmp_path)
    body = _jwks(public_path.read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", find_free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", private_path.read_bytes()
    server.shutdown()
    thread.join()


def _app(jwks_url: str) -> httpx.AsyncClient:
    router = APIRouter()

    @router.get("/v1/probe", dependencies=[require_roles(Role.COLLECTOR)])
    async def probe() -> dict[str, str]:
        return {"ok": "yes"}

    settings = ServiceSettings(
        service_name="jwks", auth=AuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)
    )
    app = create_service_app(settings, routers=[router])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


async def test_a_token_signed_by_a_key_in_the_jwks_is_admitted(
    identity_provider: tuple[str, bytes],
) -> None:
    url, private_key = identity_provider
    token = mint_token(
        private_key,
        subject="u",
        roles=[Role.COLLECTOR],
        issuer=ISSUER,
        audience=AUDIENCE,
        key_id=KEY_ID,
    )
    async with _app(url) as client:
        response = await client.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_a_token_whose_key_is_not_in_the_jwks_gets_401(
    identity_provider: tuple[str, bytes], tmp_path: Path
) -> None:
    url, _ = identity_provider
    other_private, _ = generate_keypair(tmp_path / "other")
    token = mint_token(
        other_private.read_bytes(),
        subject="u",
        roles=[Role.COLLECTOR],
        issuer=ISSUER,
        audience=AUDIENCE,
        key_id="unknown-key",
    )
    async with _app(url) as client:
        response = await client.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_an_unreachable_jwks_endpoint_is_a_503_not_a_401(tmp_path: Path) -> None:
    private_path, _ = generate_keypair(tmp_path)
    token = mint_token(
        private_path.read_bytes(),
        subject="u",
        roles=[Role.COLLECTOR],
        issuer=ISSUER,
        audience=AUDIENCE,
        key_id=KEY_ID,
    )
    closed = f"http://127.0.0.1:{find_free_port()}/jwks.json"
    async with _app(closed) as client:
        response = await client.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert "Traceback" not in response.text
