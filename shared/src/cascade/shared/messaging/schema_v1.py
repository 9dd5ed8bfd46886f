"""Migration operations for the outbox and inbox tables, version 1.

Each service's Alembic revision calls these, so the four services share one definition.
A later change to these tables is a new module (schema_v2) and a new revision, never an
edit here: applied migrations must not change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def upgrade() -> None:
    """Creates outbox_message and inbox_message."""
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.Column("key_slot", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_message"),
        sa.UniqueConstraint("event_id", name="uq_outbox_message_event_id"),
    )
    op.create_index(
        "ix_outbox_message_unpublished",
        "outbox_message",
        ["key_slot", "id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox_message",
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer_group", "event_id", name="pk_inbox_message"),
    )


def downgrade() -> None:
    """Drops outbox_message and inbox_message."""
    op.drop_table("inbox_message")
    op.drop_index("ix_outbox_message_unpublished", table_name="outbox_message")
    op.drop_table("outbox_message")
