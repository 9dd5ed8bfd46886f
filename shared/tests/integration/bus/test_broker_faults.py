"""R13: a broker frozen for 30 s (SIGSTOP), then hard-restarted (SIGKILL), under load.

On a private Apache Kafka broker, a relay process publishes business operations as they
commit and a consumer process applies them, without pause, while the broker is frozen and
later killed and restarted on its log dir. Neither process is restarted by the test: they
must reconnect by themselves. After each fault heals, every operation committed before it
is applied within 60 s; at the end 0 lost, 0 duplicated, 0 phantom effects, per-key order
intact, and the group's lag back to 0.

The relay's requests time out after 10 s, so that during the freeze the producer resends
a batch the frozen broker already holds, unanswered: the broker appends both once it
thaws. Protection: the idempotent producer, whose resend the broker recognises (the
topic holds each operation once), and behind it the inbox, which would skip a second
copy. Negative control: both switched off, the figure that must fail: `duplicated` > 0
(and the topic holds more records than operations, which shows where the copy came from).
With the idempotence off alone, the inbox skipped the copy: 1,251 records for 1,250
operations, 0 duplicated effects, in the run that showed it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from cascade.shared.infra.kafka import ApacheKafkaBroker
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.testing.bus import OUTBOX, make_steps, read_effects
from cascade.shared.testing.fixtures import KafkaBrokerFactory
from cascade.shared.testing.harness import Worker, history, wait_all_applied, wait_lag_zero
from cascade.shared.testing.history import Produced
from cascade.shared.testing.kafka import create_topics, record_count, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSE_S = 30.0  # the deliberate freeze (SIGSTOP), as in the matrix
RATE_PER_SECOND = 40  # business operations, each its own transaction
HEAL_DEADLINE_S = 60.0  # R13: lag back to 0 within 60 s of the fault's end
RELAY_REQUEST_TIMEOUT_MS = 10_000  # a third of the freeze: its requests time out inside it


class BusinessLoad:
    """Commits business operations (an event each, through the outbox) at a steady rate."""

    def __init__(self, database_url: str, topic: str) -> None:
        self.committed: list[Produced] = []
        self._engine = create_async_engine(database_url, pool_size=2)
        self._topic = topic
        self._stop = asyncio.Event()

    async def run(self) -> None:
        sessions = async_sessionmaker(self._engine)
        try:
            while not self._stop.is_set():
                steps = make_steps(RATE_PER_SECOND // 4, 30, start=len(self.committed))
                for event in steps:
                    async with sessions() as session, session.begin():
                        await add_to_outbox(session, OUTBOX, [(self._topic, event)])
                    self.committed.append(Produced(event.id, event.subject, event.data["seq"]))
                await asyncio.sleep(0.25)  # pacing the load generator, not synchronisation
        finally:
            await self._engine.dispose()

    def stop(self) -> None:
        self._stop.set()


async def _wait_effects(database_url: str, at_least: int) -> None:
    async def reached() -> bool:
        return len(await read_effects(database_url)) >= at_least

    await wait_until_async(reached, 120, f"{at_least} effects", interval=0.2)


async def _applied_within(database_url: str, committed: list[Produced], healed: float) -> float:
    """Waits until every operation committed so far is applied; returns the time since
    the fault healed."""
    await wait_all_applied(database_url, list(committed), deadline_s=HEAL_DEADLINE_S + 30)
    return time.monotonic() - healed


async def _start_bus(
    workers: Callable[..., Worker],
    database_url: str,
    broker: ApacheKafkaBroker,
    *without: str,  # protections switched off: "--no-idempotence" (relay), "--no-dedup"
) -> tuple[list[Worker], str, str]:
    topic, dead_letters, group = unique_name("events"), unique_name("dlt"), unique_name("group")
    await create_topics(broker.bootstrap_servers, [topic], partitions=6)
    await create_topics(broker.bootstrap_servers, [dead_letters], partitions=1)
    common = ["--db", database_url, "--bootstrap", broker.bootstrap_servers]
    relay = workers(
        "relay",
        *common,
        *("--batch-size", "100", "--request-timeout-ms", str(RELAY_REQUEST_TIMEOUT_MS)),
        *(flag for flag in without if flag == "--no-idempotence"),
    )
    consumer = workers(
        "consume",
        *common,
        *("--group", group, "--topic", topic, "--dead-letter-topic", dead_letters),
        *(flag for flag in without if flag == "--no-dedup"),
    )
    return [relay.start(), consumer.start()], topic, group


async def _freeze(broker: ApacheKafkaBroker, database_url: str, load: BusinessLoad) -> float:
    """Freezes the broker for PAUSE_S under load; returns how long after the thaw every
    operation committed until then was applied."""
    with broker.paused():
        await asyncio.sleep(PAUSE_S)  # the fault's length, not synchronisation
    return await _applied_within(database_url, load.committed, time.monotonic())


async def _hard_restart(broker: ApacheKafkaBroker, database_url: str, load: BusinessLoad) -> float:
    """Kills the broker and restarts it on its log dir while the load goes on; returns how
    long after the restart every operation committed until then was applied."""
    broker.kill9()
    await asyncio.to_thread(broker.restart, 120)
    return await _applied_within(database_url, load.committed, time.monotonic())


def _still_running(processes: list[Worker]) -> bool:
    return all(p.process is not None and p.process.poll() is None for p in processes)


async def test_a_frozen_then_restarted_broker_loses_and_doubles_nothing(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    broker = kafka_broker_factory()
    processes, topic, group = await _start_bus(workers, bus_database, broker)
    load = BusinessLoad(bus_database, topic)
    loading = asyncio.create_task(load.run())
    try:
        await _wait_effects(bus_database, 100)  # the bus is flowing before the fault
        after_thaw_s = await _freeze(broker, bus_database, load)
        after_restart_s = await _hard_restart(broker, bus_database, load)
        await _wait_effects(bus_database, len(load.committed) + 100)  # and flowing after it
    finally:
        load.stop()
        await loading

    await wait_all_applied(bus_database, load.committed, deadline_s=HEAL_DEADLINE_S)
    await wait_lag_zero(broker.bootstrap_servers, group, [topic], deadline_s=HEAL_DEADLINE_S)
    assert _still_running(processes), "the relay and the consumer must ride the faults out"
    report = await history(bus_database, load.committed)
    assert len(load.committed) >= 1000
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert report.order_violations == 0, str(report)
    assert after_thaw_s <= HEAL_DEADLINE_S, f"applied {after_thaw_s:.1f}s after the thaw"
    assert after_restart_s <= HEAL_DEADLINE_S, f"applied {after_restart_s:.1f}s after restart"
    # The resends during the freeze were recognised: no second copy reached the topic.
    assert await record_count(broker.bootstrap_servers, [topic]) == len(load.committed)


async def test_negative_control_without_idempotence_or_inbox_a_freeze_doubles_effects(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    broker = kafka_broker_factory()
    without = ("--no-idempotence", "--no-dedup")
    _, topic, group = await _start_bus(workers, bus_database, broker, *without)
    load = BusinessLoad(bus_database, topic)
    loading = asyncio.create_task(load.run())
    try:
        await _wait_effects(bus_database, 100)
        await _freeze(broker, bus_database, load)
    finally:
        load.stop()
        await loading

    await wait_lag_zero(broker.bootstrap_servers, group, [topic], deadline_s=HEAL_DEADLINE_S)
    records = await record_count(broker.bootstrap_servers, [topic])
    report = await history(bus_database, load.committed)
    assert records > len(load.committed), f"the producer resent nothing: {records} records"
    assert report.duplicated > 0, (
        f"protection: idempotent producer and inbox; figure: duplicated; {report}"
    )
