"""R12: a relay killed after the broker's ack, and two relays on one outbox, keep per-key order.

R12a: business operations write N events to the outbox (several per transaction; a few
transactions roll back and must never be published: phantom == 0). A relay armed with
`relay_after_kafka_ack_before_mark_sent` is killed K times after an acked batch, so that
batch is published again by the next run; a consumer applies everything.
Negative control, protection switched off: the consumer's inbox dedup (`--no-dedup`);
the figure that must fail: `duplicated` > 0.

R12b: two relays on the same outbox at once: each owns a disjoint set of key slots, so
0 order violations. Negative control, protection switched off: the per-key partitioning
(`--skip-locked-claim`, a plain `FOR UPDATE SKIP LOCKED` claim); the figure that must
fail: `order_violations` > 0. The race is made certain, not lucky: both relays are live
before the rows commit, all in one transaction, so that both claim from the same backlog
at once (a transaction per step let a relay fast enough take each step alone, and the
race depend on timing); the batch size equals the number of keys so that every batch
holds one step of every key, and N = 2,000 gives ~200 batch pairs that race.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.advisory import MEMBER_LOCKS, SLOT_LOCKS
from cascade.shared.messaging.envelope import Envelope
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.tables import KEY_SLOTS
from cascade.shared.testing.bus import OUTBOX, make_steps
from cascade.shared.testing.harness import Worker, history, wait_all_applied, wait_lag_zero
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 1000
CRASH_RUNS = 5  # K for the relay crash point (reliability matrix, "Sizes": PR tier)
RELAY_BATCH = 100  # rows per claim of the crashing relay
RACE_EVENTS = 2000
RACE_KEYS = 10


class _RolledBack(Exception):
    """Raised inside a business transaction to roll it back."""


async def commit_operations(
    database_url: str, topic: str, events: Sequence[Envelope], per_transaction: int
) -> list[Produced]:
    """Commits business transactions of `per_transaction` outbox events each."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    sessions = async_sessionmaker(engine)
    try:
        for start in range(0, len(events), per_transaction):
            async with sessions() as session, session.begin():
                chunk = events[start : start + per_transaction]
                await add_to_outbox(session, OUTBOX, [(topic, event) for event in chunk])
    finally:
        await engine.dispose()
    return [Produced(e.id, e.subject, int(e.data["seq"])) for e in events]


async def roll_back_operations(database_url: str, topic: str, events: Sequence[Envelope]) -> None:
    """Adds each event to the outbox in a transaction that then rolls back."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    sessions = async_sessionmaker(engine)
    try:
        for event in events:
            try:
                async with sessions() as session, session.begin():
                    await add_to_outbox(session, OUTBOX, [(topic, event)])
                    raise _RolledBack
            except _RolledBack:
                pass
    finally:
        await engine.dispose()


async def scalar(database_url: str, sql: str, **params: object) -> int:
    """Returns the integer result of one query."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text(sql), params) or 0)
    finally:
        await engine.dispose()


async def wait_outbox_published(database_url: str, deadline_s: float = 180.0) -> None:
    """Waits until no outbox row is left unpublished."""

    async def published() -> bool:
        sql = "SELECT count(*) FROM outbox_pending"
        return await scalar(database_url, sql) == 0

    await wait_until_async(published, deadline_s, "every outbox row to be published")


def consumer(
    workers: Callable[..., Worker], db: str, bootstrap: str, topics: tuple[str, str], *extra: str
) -> tuple[Worker, str]:
    group = unique_name("group")
    args = ["--db", db, "--bootstrap", bootstrap, "--group", group, "--topic", topics[0]]
    worker = workers("consume", *args, "--dead-letter-topic", topics[1], *extra)
    return worker, group


def relay(workers: Callable[..., Worker], db: str, bootstrap: str, *extra: str) -> Worker:
    return workers("relay", "--db", db, "--bootstrap", bootstrap, *extra)


async def _crash_relay_after_acks(worker: Worker, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(CRASH_RUNS):
        worker.start(
            crash_at="relay_after_kafka_ack_before_mark_sent", crash_after=rng.randint(1, 3)
        )
        assert worker.wait_crashed(180) == -9, worker.log_file.read_text()[-2000:]
    worker.start()


async def _run_relay_crashes(
    workers: Callable[..., Worker],
    db: str,
    bootstrap: str,
    topics: tuple[str, str],
    *consumer_flags: str,
) -> tuple[list[Produced], Worker, str]:
    steps = make_steps(N_EVENTS + 20, 50)
    produced = await commit_operations(db, topics[0], steps[:N_EVENTS], per_transaction=4)
    await roll_back_operations(db, topics[0], steps[N_EVENTS:])
    reader, group = consumer(workers, db, bootstrap, topics, *consumer_flags)
    reader.start()
    relaying = relay(workers, db, bootstrap, "--batch-size", str(RELAY_BATCH))
    await _crash_relay_after_acks(relaying, seed=7)
    await wait_outbox_published(db)
    await wait_lag_zero(bootstrap, group, [topics[0]], deadline_s=180)
    return produced, reader, group


async def test_relay_killed_after_ack_republishes_and_the_inbox_absorbs_the_duplicates(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, reader, _ = await _run_relay_crashes(
        workers, bus_database, kafka_bootstrap_servers, bus_topics
    )
    await wait_all_applied(bus_database, produced, deadline_s=180)
    reader.stop()

    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert report.order_violations == 0, str(report)
    # Each crash left a whole batch acked and unmarked (at least RELAY_BATCH rows remain
    # unmarked at every crash), published again, and the inbox skipped them.
    republished = await record_count(kafka_bootstrap_servers, [bus_topics[0]]) - N_EVENTS
    assert republished >= CRASH_RUNS * RELAY_BATCH
    assert reader.duplicates_skipped() >= 1


async def test_negative_control_without_inbox_dedup_a_relay_crash_doubles_effects(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced, reader, _ = await _run_relay_crashes(
        workers, bus_database, kafka_bootstrap_servers, bus_topics, "--no-dedup"
    )
    reader.stop()

    report = await history(bus_database, produced)
    assert report.duplicated > 0, f"protection: inbox dedup; figure: duplicated; {report}"


async def _slot_owners(database_url: str) -> dict[int, set[int]]:
    """Returns the key slots each backend (relay) holds an advisory lock on."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    sql = (
        "SELECT pid, objid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = :ns AND database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())"
    )
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text(sql), {"ns": SLOT_LOCKS})).all()
    finally:
        await engine.dispose()
    owners: dict[int, set[int]] = {}
    for pid, slot in rows:
        owners.setdefault(int(pid), set()).add(int(slot))
    return owners


async def _wait_slots_split(database_url: str) -> dict[int, set[int]]:
    async def split() -> bool:
        owners = await _slot_owners(database_url)
        return len(owners) == 2 and all(len(s) == KEY_SLOTS // 2 for s in owners.values())

    await wait_until_async(split, 120, "two relays to hold half of the key slots each")
    return await _slot_owners(database_url)


async def _wait_relays_joined(database_url: str, count: int) -> None:
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :ns"

    async def joined() -> bool:
        return await scalar(database_url, sql, ns=MEMBER_LOCKS) == count

    await wait_until_async(joined, 120, f"{count} relays to join")


async def _race_two_relays(
    workers: Callable[..., Worker], db: str, bootstrap: str, topics: tuple[str, str], *flags: str
) -> list[Produced]:
    for _ in range(2):
        relay(workers, db, bootstrap, "--batch-size", str(RACE_KEYS), *flags).start()
    await _wait_relays_joined(db, 2)
    if not flags:
        await _wait_slots_split(db)
    produced = await commit_operations(
        db, topics[0], make_steps(RACE_EVENTS, RACE_KEYS), per_transaction=RACE_EVENTS
    )
    reader, group = consumer(workers, db, bootstrap, topics)
    reader.start()
    await wait_outbox_published(db)
    await wait_all_applied(db, produced, deadline_s=180)
    await wait_lag_zero(bootstrap, group, [topics[0]], deadline_s=180)
    return produced


async def test_two_relays_own_disjoint_key_slots_and_keep_per_key_order(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await _race_two_relays(workers, bus_database, kafka_bootstrap_servers, bus_topics)

    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert report.order_violations == 0, str(report)
    owners = list((await _wait_slots_split(bus_database)).values())
    assert not owners[0] & owners[1]
    assert owners[0] | owners[1] == set(range(KEY_SLOTS))


async def test_negative_control_two_skip_locked_relays_publish_a_key_out_of_order(
    workers: Callable[..., Worker],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    produced = await _race_two_relays(
        workers, bus_database, kafka_bootstrap_servers, bus_topics, "--skip-locked-claim"
    )

    report = await history(bus_database, produced)
    assert report.order_violations > 0, (
        f"protection: per-key slot partitioning; figure: order_violations; {report}"
    )
