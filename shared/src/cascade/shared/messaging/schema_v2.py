"""Migration operations for the outbox, version 2: the relay's index in publishing order.

The relay claims the oldest unpublished rows of its key slots (`ORDER BY id`). Indexed by
(key_slot, id), that order needs a sort of the whole backlog, so PostgreSQL walked the
primary key instead, past every published row still kept for the retention period: each
claim of a large backlog (a business-day close writes 100,000 events) got slower than the
last. Indexed by id alone and only while unpublished, a claim reads its rows and stops.

Pruning had the same walk: it looked for published rows past the retention period from the
lowest id, through the whole table whenever fewer than a batch were due. A BRIN index on
created_at (rows arrive in time order; tiny, and it never blocks HOT updates) lets it read
only the block ranges old enough to hold such rows.

Rows may carry Kafka headers (`headers`, JSON): a dead letter written in the transaction
that refuses an event keeps its provenance headers and cannot be lost to a crash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    """Indexes unpublished rows by id (instead of key_slot, id), and rows by creation time;
    adds the optional headers column."""
    op.add_column("outbox_message", sa.Column("headers", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_outbox_message_unpublished_id", "outbox_message", ["id"], postgresql_where=_UNPUBLISHED
    )
    op.drop_index("ix_outbox_message_unpublished", table_name="outbox_message")
    op.create_index(
        "ix_outbox_message_created_at",
        "outbox_message",
        ["created_at"],
        postgresql_using="brin",
    )


def downgrade() -> None:
    """Puts the (key_slot, id) index back; drops the headers column."""
    op.drop_column("outbox_message", "headers")
    op.drop_index("ix_outbox_message_created_at", table_name="outbox_message")
    op.create_index(
        "ix_outbox_message_unpublished",
        "outbox_message",
        ["key_slot", "id"],
        postgresql_where=_UNPUBLISHED,
    )
    op.drop_index("ix_outbox_message_unpublished_id", table_name="outbox_message")
