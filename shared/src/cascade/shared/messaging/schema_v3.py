"""Migration operations for the outbox, version 3: unpublished rows listed in their own table.

Until v2 the relay marked a row published by setting `published_at`. That rewrote the
whole row (payload included) and, since `published_at` was in the claim index's predicate,
PostgreSQL could not update it in place: every mark wrote a new row version and new entries
in every index. It was the largest database cost per event on the bus (`make bench-bus`).

Now a statement-level trigger on the outbox lists every inserted row's id in
`outbox_pending`, a narrow table, and the relay deletes the ids it has published. An
outbox row is unpublished while its id is listed there; the row itself is never updated.
Retention counts from creation: a row is pruned once it is older than the retention period
and no longer pending.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cascade.shared.messaging.tables import LIST_PENDING_DDL


def upgrade() -> None:
    """Creates outbox_pending from the unpublished rows; drops published_at and its index."""
    op.create_table(
        "outbox_pending",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("key_slot", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_pending"),
    )
    for statement in LIST_PENDING_DDL:
        op.execute(statement)
    # The trigger and this copy run in the migration's transaction: a row committed by a
    # writer of the previous release is either copied here or listed by the trigger.
    op.execute(
        "INSERT INTO outbox_pending (id, key_slot) "
        "SELECT id, key_slot FROM outbox_message WHERE published_at IS NULL"
    )
    op.drop_index("ix_outbox_message_unpublished_id", table_name="outbox_message")
    op.drop_column("outbox_message", "published_at")


def downgrade() -> None:
    """Back to published_at: rows no longer pending count as published now."""
    op.execute("DROP TRIGGER outbox_list_pending ON outbox_message")
    op.execute("DROP FUNCTION outbox_list_pending()")
    op.add_column(
        "outbox_message", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE outbox_message SET published_at = now() "
        "WHERE NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.id = outbox_message.id)"
    )
    op.create_index(
        "ix_outbox_message_unpublished_id",
        "outbox_message",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox_pending")
