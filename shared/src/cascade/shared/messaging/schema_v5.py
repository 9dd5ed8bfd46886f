"""Migration operations for the inbox, version 5: until when each row must be remembered.

The inbox was never pruned. Each row now carries `expires_at`, set by the consumer from
the topics its batch came from (topology.inbox_keep_ms), and the inbox sweep deletes the
rows past it (messaging.inbox_sweep).

The column's default covers the rows already there and those a consumer of the previous
release writes during the upgrade: kept for the longest window any topic needs, counted
from now. `now()` is stable, not volatile, so PostgreSQL computes the value for the
existing rows once and keeps it in the catalogue: adding the column rewrites nothing, and
takes its lock only for that instant.
"""

from __future__ import annotations

from alembic import op

from cascade.shared.messaging.tables import INBOX_EXPIRES_DEFAULT


def upgrade() -> None:
    """Adds `expires_at` to the inbox."""
    op.execute(
        "ALTER TABLE inbox_message ADD COLUMN expires_at timestamp with time zone NOT NULL "
        f"DEFAULT {INBOX_EXPIRES_DEFAULT}"
    )


def downgrade() -> None:
    """Drops it: the previous release neither writes nor reads it."""
    op.drop_column("inbox_message", "expires_at")
