"""Migration operations for the outbox, version 4: the row type its writers send.

`add_to_outbox` sends a transaction's events as one array of `outbox_row`, not one array
per column: asyncpg checks each element of an array parameter against abstract base
classes before encoding it: eleven checks per event over six arrays, four for one row.
The type is only the writers' parameter; the outbox table is unchanged.

Applied before the release that writes with it: a writer of the previous release still
sends its per-column arrays, which this migration leaves valid.
"""

from __future__ import annotations

from alembic import op

from cascade.shared.messaging.tables import OUTBOX_ROW_DDL, OUTBOX_ROW_TYPE


def upgrade() -> None:
    """Creates the outbox row type."""
    op.execute(OUTBOX_ROW_DDL)


def downgrade() -> None:
    """Drops it: the previous release's writers do not use it."""
    op.execute(f"DROP TYPE {OUTBOX_ROW_TYPE}")
