"""Migration operations for the inbox, version 5: until when each row must be remembered.

The inbox was never pruned. Each row now carries `expires_at`, set by the consumer from
the topics its batch came from (topology.inbox_keep_ms), and the inbox sweep deletes the
rows past it (messaging.inbox_sweep).

The column's default covers the rows already there and those a consumer of the previous
release writes during the upgrade: kept for the longest window any topic needs (483 days
when this was written), counted from now. `now()` is stable, not volatile, so PostgreSQL
computes the value for the existing rows once and keeps it in the catalogue: nothing is
rewritten or scanned. The ALTER still needs the table's exclusive lock, and would queue
behind a consumer's open transaction (up to its batch timeout) while every insert queued
behind it: past `lock_timeout` the migration fails instead, and is run again.
"""

from __future__ import annotations

from alembic import op

# Written out, not imported: a migration states what it did, whatever the model says later.
_DEFAULT = "now() + interval '42336000 seconds'"  # 490 days


def upgrade() -> None:
    """Adds `expires_at` to the inbox."""
    op.execute("SET LOCAL lock_timeout = '3s'")
    op.execute(
        "ALTER TABLE inbox_message ADD COLUMN expires_at timestamp with time zone NOT NULL "
        f"DEFAULT {_DEFAULT}"
    )
    # Only for this ALTER: later revisions of the same run keep the server's setting.
    op.execute("SET LOCAL lock_timeout = DEFAULT")


def downgrade() -> None:
    """Drops it: the previous release neither writes nor reads it."""
    op.drop_column("inbox_message", "expires_at")
