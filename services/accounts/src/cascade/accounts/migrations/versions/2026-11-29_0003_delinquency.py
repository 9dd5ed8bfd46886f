"""The accounts service's delinquency tables: accounts and their contact snapshots, their
facts, pauses, bucket history, events held for accounts not opened yet, and the business
days closed.

Revision ID: accounts_0003
Revises: accounts_0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "accounts_0003"
down_revision: str | None = "accounts_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates the delinquency tables and their indexes."""
    op.create_table(
        "account",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("product", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("opened_digest", sa.Text(), nullable=False),
        sa.Column("key_slot", sa.SmallInteger(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("jurisdiction", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=True),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("arrears_minor", sa.BigInteger(), nullable=False),
        sa.Column("oldest_unpaid_due_date", sa.Date(), nullable=True),
        sa.Column("within_tolerance", sa.Boolean(), nullable=False),
        sa.Column("unpaid_since", sa.Date(), nullable=True),
        sa.Column("counted_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("closure_reason", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account")),
        postgresql_with={"fillfactor": 85},
    )
    op.create_index(
        "ix_account_delinquent",
        "account",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text("status = 'delinquent'"),
    )
    op.create_index(
        "ix_account_status_bucket", "account", ["status", "bucket", "account_id"], unique=False
    )
    op.create_index(
        "ix_account_unpaid_since",
        "account",
        ["unpaid_since"],
        unique=False,
        postgresql_where=sa.text("status <> 'closed' AND unpaid_since IS NOT NULL"),
    )
    op.create_table(
        "account_contact",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("customer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("contact_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_contact")),
    )
    op.create_table(
        "bucket_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("entered_on", sa.Date(), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bucket_history")),
    )
    op.create_index(
        "ix_bucket_history_account", "bucket_history", ["account_id", "id"], unique=False
    )
    op.create_index(
        "uq_bucket_history_open",
        "bucket_history",
        ["account_id"],
        unique=True,
        postgresql_where=sa.text("left_on IS NULL"),
    )
    op.create_table(
        "business_day",
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("accounts_aged", sa.Integer(), nullable=False),
        sa.Column("events_written", sa.Integer(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("business_date", name=op.f("pk_business_day")),
    )
    op.create_table(
        "delinquency_action",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("pause_id", sa.Text(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delinquency_action")),
    )
    op.create_index(
        "ix_delinquency_action_account", "delinquency_action", ["account_id", "id"], unique=False
    )
    op.create_table(
        "delinquency_pause",
        sa.Column("pause_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ended_announced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("pause_id", name=op.f("pk_delinquency_pause")),
    )
    op.create_index(
        "ix_delinquency_pause_account", "delinquency_pause", ["account_id"], unique=False
    )
    op.create_index(
        "ix_delinquency_pause_ending",
        "delinquency_pause",
        ["end_date"],
        unique=False,
        postgresql_where=sa.text("NOT ended_announced"),
    )
    op.create_table(
        "held_event",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("origin_topic", sa.Text(), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("origin_timestamp", sa.BigInteger(), nullable=False),
        sa.Column(
            "held_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_held_event")),
    )
    op.create_index("ix_held_event_account", "held_event", ["account_id"], unique=False)
    op.create_table(
        "installment",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("installment_id", sa.Text(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "installment_id", name=op.f("pk_installment")),
    )
    op.create_index(
        "ix_installment_account_due",
        "installment",
        ["account_id", "due_date", "amount_minor"],
        unique=False,
    )
    op.create_table(
        "payment",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "payment_id", name=op.f("pk_payment")),
    )
    op.create_index(
        "ix_payment_pending",
        "payment",
        ["value_date"],
        unique=False,
        postgresql_where=sa.text("pending"),
    )
    op.create_table(
        "payment_reversal",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=False),
        sa.Column("reversed_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("effective", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "payment_id", name=op.f("pk_payment_reversal")),
    )
    op.create_index(
        "ix_payment_reversal_waiting",
        "payment_reversal",
        ["reversed_on"],
        unique=False,
        postgresql_where=sa.text("NOT effective"),
    )


def downgrade() -> None:
    """Drops them."""
    op.drop_index(
        "ix_payment_reversal_waiting",
        table_name="payment_reversal",
        postgresql_where=sa.text("NOT effective"),
    )
    op.drop_table("payment_reversal")
    op.drop_index("ix_payment_pending", table_name="payment", postgresql_where=sa.text("pending"))
    op.drop_table("payment")
    op.drop_index("ix_installment_account_due", table_name="installment")
    op.drop_table("installment")
    op.drop_index("ix_held_event_account", table_name="held_event")
    op.drop_table("held_event")
    op.drop_index(
        "ix_delinquency_pause_ending",
        table_name="delinquency_pause",
        postgresql_where=sa.text("NOT ended_announced"),
    )
    op.drop_index("ix_delinquency_pause_account", table_name="delinquency_pause")
    op.drop_table("delinquency_pause")
    op.drop_index("ix_delinquency_action_account", table_name="delinquency_action")
    op.drop_table("delinquency_action")
    op.drop_table("business_day")
    op.drop_index(
        "uq_bucket_history_open",
        table_name="bucket_history",
        postgresql_where=sa.text("left_on IS NULL"),
    )
    op.drop_index("ix_bucket_history_account", table_name="bucket_history")
    op.drop_table("bucket_history")
    op.drop_table("account_contact")
    op.drop_index(
        "ix_account_unpaid_since",
        table_name="account",
        postgresql_where=sa.text("status <> 'closed' AND unpaid_since IS NOT NULL"),
    )
    op.drop_index("ix_account_status_bucket", table_name="account")
    op.drop_index(
        "ix_account_delinquent",
        table_name="account",
        postgresql_where=sa.text("status = 'delinquent'"),
    )
    op.drop_table("account")
