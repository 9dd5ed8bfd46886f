"""Bearer-token authentication as a bank's identity provider issues it.

Tokens are JWTs signed with an asymmetric key (RS256 or ES256) and verified against a
configured public key or JWKS. The algorithm is pinned and `iss`, `aud` and `exp` are
required and checked (RFC 8725 §3.1, §3.8, §3.9). Roles come from the `roles` claim and
are checked per route.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cascade.shared.logging import get_logger
from cascade.shared.settings import AuthSettings

log = get_logger(__name__)

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Role(StrEnum):
    COLLECTOR = "collector"
    SUPERVISOR = "supervisor"
    LEGAL = "legal"
    OPERATOR = "operator"
    SYSTEM = "system"


@dataclass(frozen=True)
class Principal:
    """Who called: the token's subject and the roles it grants."""

    subject: str
    roles: frozenset[Role]


class InvalidTokenError(Exception):
    """The bearer token cannot be trusted; the message is safe to return to the caller."""


class KeysUnavailableError(Exception):
    """The identity provider's keys cannot be fetched: no token can be verified now."""


class TokenVerifier:
    """Verifies bearer tokens against the configured public key or JWKS."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._static_key: Any = None
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwks_url is not None:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True)
        elif settings.public_key_path is not None:
            self._static_key = serialization.load_pem_public_key(
                settings.public_key_path.read_bytes()
            )

    def verify(self, token: str) -> Principal:
        """Returns the principal of a valid token; raises InvalidTokenError otherwise."""
        try:
            claims = jwt.decode(
                token,
                key=self._key_for(token),
                algorithms=[self._settings.algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidTokenError("the token has expired") from error
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as error:
            raise KeysUnavailableError("the identity provider's keys are unreachable") from error
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as error:
            raise InvalidTokenError(f"the token is not valid: {_reason(error)}") from error
        return Principal(subject=str(claims["sub"]), roles=_roles(claims.get("roles")))

    @property
    def fetches_keys(self) -> bool:
        """Tells whether verifying may fetch keys over the network (JWKS)."""
        return self._jwks is not None

    def _key_for(self, token: str) -> Any:
        if self._jwks is not None:
            return self._jwks.get_signing_key_from_jwt(token).key
        return self._static_key


def _reason(error: Exception) -> str:
    # PyJWT's messages name the failed check, never the token's content.
    return str(error) or type(error).__name__


def _roles(raw: object) -> frozenset[Role]:
    if not isinstance(raw, list):
        return frozenset()
    known = {role.value for role in Role}
    return frozenset(Role(item) for item in raw if isinstance(item, str) and item in known)


# Declared in the OpenAPI document; the required roles are listed in each operation's
# security requirement, as OpenAPI 3.1 allows for non-OAuth schemes.
BEARER_SCHEME = HTTPBearer(auto_error=False, scheme_name="bearerAuth", bearerFormat="JWT")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers=BEARER_CHALLENGE)


def require_roles(*roles: Role) -> Any:
    """Returns a route dependency that admits a valid token carrying one of `roles`."""
    if not roles:
        raise ValueError("name at least one role: every route is for someone")
    allowed = frozenset(roles)

    async def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)],
    ) -> Principal:
        if credentials is None or not credentials.credentials.strip():
            raise _unauthorized("send a bearer token: 'Authorization: Bearer <token>'")
        verifier: TokenVerifier = request.app.state.token_verifier
        token = credentials.credentials.strip()
        try:
            # A JWKS refresh is blocking HTTP: keep it off the event loop.
            principal = (
                await run_in_threadpool(verifier.verify, token)
                if verifier.fetches_keys
                else verifier.verify(token)
            )
        except InvalidTokenError as error:
            log.warning("auth.rejected", reason=str(error), path=request.url.path)
            raise _unauthorized(str(error)) from error
        except KeysUnavailableError as error:
            log.error("auth.keys_unavailable", path=request.url.path)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error), headers={"Retry-After": "5"}
            ) from error
        if not principal.roles & allowed:
            log.warning("auth.forbidden", subject=principal.subject, path=request.url.path)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="this route needs one of the roles: " + ", ".join(sorted(allowed)),
            )
        return principal

    return Security(authenticate, scopes=sorted(allowed))


# --- key material and tokens for the local stack and the tests -----------------------


def generate_keypair(directory: Path, algorithm: str = "RS256") -> tuple[Path, Path]:
    """Creates `jwt-private.pem` and `jwt-public.pem` once; returns their paths."""
    private_path, public_path = directory / "jwt-private.pem", directory / "jwt-public.pem"
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    directory.mkdir(parents=True, exist_ok=True)
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def mint_token(
    private_key_pem: bytes,
    *,
    subject: str,
    roles: Iterable[Role | str],
    issuer: str,
    audience: str,
    ttl: timedelta = timedelta(hours=1),
    algorithm: str = "RS256",
    now: datetime | None = None,
    key_id: str | None = None,
) -> str:
    """Returns a signed token, as the bank's identity provider would issue it."""
    issued_at = now or datetime.now(UTC)
    claims = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl,
        "roles": [str(role) for role in roles],
    }
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, private_key_pem, algorithm=algorithm, headers=headers)
