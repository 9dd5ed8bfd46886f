"""The cases service's outbox and inbox (event backbone).

Revision ID: cases_0002
Revises: cases_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from cascade.shared.messaging import schema_v1

revision: str = "cases_0002"
down_revision: str | None = "cases_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates outbox_message and inbox_message."""
    schema_v1.upgrade()


def downgrade() -> None:
    """Drops them."""
    schema_v1.downgrade()
