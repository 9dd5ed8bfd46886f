"""The legal service's outbox claim index, in publishing order (event backbone).

Revision ID: legal_0003
Revises: legal_0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from cascade.shared.messaging import schema_v2

revision: str = "legal_0003"
down_revision: str | None = "legal_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Indexes the unpublished outbox rows by id."""
    schema_v2.upgrade()


def downgrade() -> None:
    """Back to the (key_slot, id) index."""
    schema_v2.downgrade()
