"""A closed account's open bucket period ends at its closure (accounts).

From this release the service ends it when the closure is applied; this ends the periods
of the accounts closed before. The downgrade leaves them ended: which were open before
cannot be told apart, and the previous release reads an ended period correctly.

Revision ID: accounts_0007
Revises: accounts_0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "accounts_0007"
down_revision: str | None = "accounts_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Ends the open periods of the accounts already closed, on their closure date."""
    op.execute(
        "UPDATE bucket_history h SET left_on = GREATEST(h.entered_on, a.closed_on) "
        "FROM account a WHERE a.account_id = h.account_id AND a.status = 'closed' "
        "AND a.closed_on IS NOT NULL AND h.left_on IS NULL"
    )


def downgrade() -> None:
    """Nothing to undo (see the module's docstring)."""
