"""A local token issuer for tests: the bank's identity provider in miniature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cascade.shared.auth import Role, generate_keypair, mint_token
from cascade.shared.settings import AuthSettings

ISSUER = "https://idp.test.cascade"
AUDIENCE = "cascade-test"


@dataclass(frozen=True)
class LocalIssuer:
    """Mints tokens with a key pair made for the test run."""

    private_key: bytes
    public_key_path: Path

    @classmethod
    def create(cls, directory: Path) -> LocalIssuer:
        """Returns an issuer whose keys live in `directory`."""
        private_path, public_path = generate_keypair(directory)
        return cls(private_path.read_bytes(), public_path)

    @property
    def auth_settings(self) -> AuthSettings:
        """Returns the settings a service uses to verify this issuer's tokens."""
        return AuthSettings(issuer=ISSUER, audience=AUDIENCE, public_key_path=self.public_key_path)

    def token(
        self,
        *roles: Role,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        expires_in: timedelta = timedelta(minutes=5),
    ) -> str:
        """Returns a signed token for `roles`; a negative `expires_in` makes it expired."""
        now = datetime.now(UTC)
        if expires_in < timedelta(0):
            now += expires_in - timedelta(minutes=10)
            expires_in = timedelta(minutes=10) + abs(expires_in) // 2
        return mint_token(
            self.private_key,
            subject="test-user",
            roles=roles,
            issuer=issuer,
            audience=audience,
            ttl=expires_in,
            now=now,
        )
