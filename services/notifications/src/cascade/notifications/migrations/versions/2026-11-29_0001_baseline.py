"""Baseline of the notifications database: the point later migrations start from.

Revision ID: notifications_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

revision: str = "notifications_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates nothing: the service's tables arrive with the issues that need them."""


def downgrade() -> None:
    """Nothing to undo."""
