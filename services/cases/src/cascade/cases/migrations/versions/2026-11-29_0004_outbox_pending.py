"""The cases service's outbox lists unpublished rows in outbox_pending (event backbone).

Revision ID: cases_0004
Revises: cases_0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from cascade.shared.messaging import schema_v3

revision: str = "cases_0004"
down_revision: str | None = "cases_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Moves the unpublished rows' ids into outbox_pending; drops published_at."""
    schema_v3.upgrade()


def downgrade() -> None:
    """Back to marking rows with published_at."""
    schema_v3.downgrade()
