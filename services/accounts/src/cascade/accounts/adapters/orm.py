"""Tables of the accounts service's own database.

`account` holds the profile and the figures as at `as_of_date`; `unpaid_since` and
`counted_paid_minor` are what the set-based business-day close needs, and the partial
indexes let it read only accounts that are, or may just have become, past due.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from cascade.shared.db import make_metadata
from cascade.shared.messaging.tables import inbox_table, outbox_table

metadata = make_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

account = Table(
    "account",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("product", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("opened_digest", Text, nullable=False),
    # The outbox relay's slot of this account's key (messaging.tables.key_slot), so the
    # set-based close can write outbox rows without a round trip through Python.
    Column("key_slot", SmallInteger, nullable=False),
    # From the contact snapshot, what every event carries (no personal data).
    Column("customer_id", Text, nullable=False),
    Column("jurisdiction", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("as_of_date", Date),
    Column("days_past_due", Integer, nullable=False),
    Column("bucket", Text, nullable=False),
    Column("arrears_minor", BigInteger, nullable=False),
    Column("oldest_unpaid_due_date", Date),
    Column("within_tolerance", Boolean, nullable=False),
    Column("unpaid_since", Date),
    Column("counted_paid_minor", BigInteger, nullable=False),
    Column("closed_on", Date),
    Column("closure_reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_account_unpaid_since",
        "unpaid_since",
        postgresql_where=text("status <> 'closed' AND unpaid_since IS NOT NULL"),
    ),
    Index("ix_account_delinquent", "account_id", postgresql_where=text("status = 'delinquent'")),
    Index("ix_account_status_bucket", "status", "bucket", "account_id"),
    # Room on each page: a close rewrites every delinquent row, and an update that changes no
    # indexed column stays on its page (a HOT update) only if the page has space for it.
    postgresql_with={"fillfactor": 85},
)

# Personal data, apart from the narrow account row that the close reads every day.
account_contact = Table(
    "account_contact",
    metadata,
    Column("account_id", Text, primary_key=True),
    # The latest snapshot, ordered by the event's (time, id); never logged.
    Column("customer", JSONB, nullable=False),
    Column("contact_time", DateTime(timezone=True), nullable=False),
    Column("contact_event_id", Text, nullable=False),
)

installment = Table(
    "installment",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("installment_id", Text, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "installment_id"),
    Index("ix_installment_account_due", "account_id", "due_date", "amount_minor"),
)

payment = Table(
    "payment",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("value_date", Date, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    # Pending: neither counted (payment-applied published) nor cancelled by a reversal yet.
    Column("pending", Boolean, nullable=False),
    Column("applied", Boolean, nullable=False),
    PrimaryKeyConstraint("account_id", "payment_id"),
    Index("ix_payment_pending", "value_date", postgresql_where=text("pending")),
)

payment_reversal = Table(
    "payment_reversal",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("reversed_on", Date, nullable=False),
    Column("reason", Text, nullable=False),
    Column("effective", Boolean, nullable=False),
    PrimaryKeyConstraint("account_id", "payment_id"),
    Index("ix_payment_reversal_waiting", "reversed_on", postgresql_where=text("NOT effective")),
)

# Events for an account core banking has not opened (yet): kept, applied when it opens.
held_event = Table(
    "held_event",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("envelope", LargeBinary, nullable=False),  # the record's value, byte for byte
    Column("origin_topic", Text, nullable=False),
    Column("origin_partition", Integer, nullable=False),
    Column("origin_offset", BigInteger, nullable=False),
    Column("origin_timestamp", BigInteger, nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_held_event_account", "account_id"),
)

# Append-only, as in Fineract's m_loan_delinquency_action: nothing is edited or deleted.
delinquency_action = Table(
    "delinquency_action",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("action", Text, nullable=False),  # pause | resume
    Column("pause_id", Text, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
    Column("reason", Text),
    Column("actor", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_delinquency_action_account", "account_id", "id"),
)

# The effective pauses (pause truncated by its resume), derived from the actions.
delinquency_pause = Table(
    "delinquency_pause",
    metadata,
    Column("pause_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
    Column("reason", Text, nullable=False),
    Column("ended_announced", Boolean, nullable=False, server_default=text("false")),
    Index("ix_delinquency_pause_account", "account_id"),
    Index("ix_delinquency_pause_ending", "end_date", postgresql_where=text("NOT ended_announced")),
)

bucket_history = Table(
    "bucket_history",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("bucket", Text, nullable=False),
    Column("entered_on", Date, nullable=False),
    Column("left_on", Date),
    Index("ix_bucket_history_account", "account_id", "id"),
    Index(
        "uq_bucket_history_open",
        "account_id",
        unique=True,
        postgresql_where=text("left_on IS NULL"),
    ),
)

business_day = Table(
    "business_day",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("accounts_aged", Integer, nullable=False),
    Column("events_written", Integer, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
