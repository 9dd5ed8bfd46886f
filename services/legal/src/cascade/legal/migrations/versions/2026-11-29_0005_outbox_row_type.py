"""The legal service's outbox writers send one array of rows (event backbone).

Revision ID: legal_0005
Revises: legal_0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from cascade.shared.messaging import schema_v4

revision: str = "legal_0005"
down_revision: str | None = "legal_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates the row type add_to_outbox sends."""
    schema_v4.upgrade()


def downgrade() -> None:
    """Drops the row type."""
    schema_v4.downgrade()
