"""The legal service's inbox rows carry their expiry, for the inbox sweep (event backbone).

Revision ID: legal_0006
Revises: legal_0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from cascade.shared.messaging import schema_v5

revision: str = "legal_0006"
down_revision: str | None = "legal_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds the inbox's expires_at column."""
    schema_v5.upgrade()


def downgrade() -> None:
    """Drops it."""
    schema_v5.downgrade()
