"""The outbox and inbox tables every service has in its own database."""

from __future__ import annotations

import zlib
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.engine import Connection

# Keys hash into this many slots; each relay publishes the slots it holds a lock on, so
# one key is only ever published by one relay at a time (per-key order).
KEY_SLOTS = 64

PENDING = "outbox_pending"

# Every row inserted into the outbox is listed as pending by the database itself, in the
# inserting statement: no writer can forget it, whatever writes the row (the platform's
# helpers, set-based SQL such as the accounts close, or an instance of the previous release
# during a rolling upgrade). Statement-level: one INSERT per statement, not one per row.
LIST_PENDING_DDL = (
    "CREATE OR REPLACE FUNCTION outbox_list_pending() RETURNS trigger LANGUAGE plpgsql AS $$"  # noqa: S608
    f" BEGIN INSERT INTO {PENDING} (id, key_slot) SELECT id, key_slot FROM written;"
    " RETURN NULL; END $$",
    "CREATE TRIGGER outbox_list_pending AFTER INSERT ON outbox_message"
    " REFERENCING NEW TABLE AS written FOR EACH STATEMENT"
    " EXECUTE FUNCTION outbox_list_pending()",
)


# The row add_to_outbox sends, one array of them per statement (schema_v4). Its fields are
# the columns the statement fills, in its order. Never altered: writers of the release still
# running send this shape, and pooled connections keep its description. A new field is a new
# type (outbox_row_v2): created by a migration, sent from the next release, and this one
# dropped a release after that.
OUTBOX_ROW_TYPE = "outbox_row"
OUTBOX_ROW_DDL = (
    f"CREATE TYPE {OUTBOX_ROW_TYPE} AS (event_id text, event_type text, topic text,"
    " message_key text, key_slot smallint, payload bytea, headers bytea)"
)


def key_slot(key: str) -> int:
    """Returns the relay slot of a message key (stable across processes and releases)."""
    return zlib.crc32(key.encode()) % KEY_SLOTS


def outbox_table(metadata: MetaData) -> Table:
    """Returns the outbox: events written in the business transaction, published later.

    Also adds `outbox_pending` to `metadata`: the ids of the rows not yet published.
    """
    outbox_pending_table(metadata)
    outbox = Table(
        "outbox_message",
        metadata,
        # The identity gives the publishing order per key. It is insert order: business code
        # serialises writes to one account (it locks the account's row first), so for one
        # key insert order is commit order.
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        # Unique: consumers deduplicate by event id, so a second event reusing an id would
        # be dropped downstream; the business transaction fails loudly instead.
        Column("event_id", Text, nullable=False, unique=True),
        Column("event_type", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("message_key", Text, nullable=False),
        Column("key_slot", SmallInteger, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        # Kafka headers as JSON ({name: text}), for the rare row that needs them: a dead
        # letter written in the transaction that refused its event (schema_v2).
        Column("headers", LargeBinary, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # Pruning reads only the block ranges old enough (schema_v2).
        Index("ix_outbox_message_created_at", "created_at", postgresql_using="brin"),
    )
    event.listen(outbox, "after_create", _create_trigger_and_row_type)
    event.listen(outbox, "after_drop", _drop_row_type)
    return outbox


def _create_trigger_and_row_type(target: Table, connection: Connection, **_: Any) -> None:
    """For metadata.create_all (tests, benchmarks); migrations run the same statements."""
    for statement in (*LIST_PENDING_DDL, OUTBOX_ROW_DDL):
        connection.exec_driver_sql(statement)


def _drop_row_type(target: Table, connection: Connection, **_: Any) -> None:
    # The trigger goes with its table; the type would outlive it and fail the next create.
    connection.exec_driver_sql(f"DROP TYPE IF EXISTS {OUTBOX_ROW_TYPE}")


def outbox_pending_table(metadata: MetaData) -> Table:
    """Returns the ids of the outbox rows not yet published, in publishing order (schema_v3).

    Written with the row, by the outbox's trigger, and deleted by the relay after the
    broker's acknowledgement: the outbox row itself is never updated, which keeps marking
    a row published cheap (no new version of a wide row, no index entries).
    """
    return Table(
        PENDING,
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("key_slot", SmallInteger, nullable=False),
    )


# How long an inbox row is kept when its writer does not say (schema_v5): rows written
# before that migration or by a consumer of the previous release, and events of a topic
# the topology does not declare (tests, benchmarks). At least the longest window that
# topology.inbox_keep_ms gives, which a test checks.
INBOX_KEEP_UNLISTED_S = 490 * 24 * 3600
INBOX_EXPIRES_DEFAULT = f"now() + interval '{INBOX_KEEP_UNLISTED_S} seconds'"


def inbox_table(metadata: MetaData) -> Table:
    """Returns the inbox: the ids of events a consumer group has applied, and until when
    they must be remembered (the sweep deletes them after, messaging.inbox_sweep)."""
    return Table(
        "inbox_message",
        metadata,
        Column("consumer_group", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # Not indexed: an index would cost every insert, where the sweep reads the table
        # block range by block range in the background.
        Column(
            "expires_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=text(INBOX_EXPIRES_DEFAULT),
        ),
        PrimaryKeyConstraint("consumer_group", "event_id"),
    )
