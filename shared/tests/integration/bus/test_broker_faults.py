"""R13: a broker frozen for 30 s (SIGSTOP), then hard-restarted (SIGKILL), under load.

On a private Apache Kafka broker, a relay process publishes business operations as they
commit and a consumer process applies them, without pause, while the broker is frozen and
later killed and restarted on its log dir. Neither process is restarted by the test: they
must reconnect by themselves. Within 60 s of each fault's end, every operation committed
before it is applied and the group's offsets are committed past it (lag 0); at the end 0
lost, 0 duplicated, 0 phantom effects, per-key order intact.

The relay's requests time out after 10 s, so a produce request the frozen broker holds
unanswered times out inside the freeze (its log shows the RequestTimedOutError). The
broker appends that request once it thaws. The idempotent producer never gives the batch
up: it resends it, with the same sequence numbers, and the broker recognises the copy, so
the topic holds each operation once. Without idempotence the batch expires instead, the
relay claims its unmarked rows again and publishes them with a new producer: the topic
holds a second copy, and only the inbox keeps its effect single (seen in one run: 1,251
records for 1,250 operations, 0 duplicated effects).
Negative control: the idempotent producer and the inbox both switched off; the figures
that must fail: more records on the topic than operations, and `duplicated` > 0.
Not covered here: R13's clauses for a cluster of several brokers (no rebalance on a
broker restart) and for network latency and partitions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from cascade.shared.infra.kafka import ApacheKafkaBroker
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.testing.fixtures import KafkaBrokerFactory
from cascade.shared.testing.harness import (
    Worker,
    assert_exactly_once_in_order,
    history,
    wait_all_applied,
    wait_effects_at_least,
    wait_lag_zero,
)
from cascade.shared.testing.kafka import create_topics, end_offsets, record_count, unique_name
from cascade.shared.testing.load import BusinessLoad

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAUSE_S = 30.0  # the deliberate freeze (SIGSTOP), as in the matrix
RATE_PER_SECOND = 40  # at most, in business operations of one transaction each
MIN_OPERATIONS = 1000
HEAL_DEADLINE_S = 60.0  # R13: lag back to 0 within 60 s of the fault's end
WAIT_S = 120.0  # how long a wait may run before the test gives up (figures are asserted)
RELAY_REQUEST_TIMEOUT_MS = 10_000  # a third of the freeze: its requests time out inside it


async def _wait_for(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    await wait_until_async(condition, WAIT_S, what, interval=0.5)


async def _healed_within(
    database_url: str, broker: ApacheKafkaBroker, group: str, topic: str, load: BusinessLoad
) -> float:
    """Returns how long after now every operation committed until now is applied and the
    group's offsets are committed past it."""
    healed, committed = time.monotonic(), list(load.committed)
    await wait_all_applied(database_url, committed, deadline_s=WAIT_S)
    ends = await end_offsets(broker.bootstrap_servers, [topic])  # they are all on it now
    await wait_lag_zero(broker.bootstrap_servers, group, [topic], deadline_s=WAIT_S, ends=ends)
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


async def _freeze(broker: ApacheKafkaBroker) -> None:
    with broker.paused():
        await asyncio.sleep(PAUSE_S)  # the fault's length, not synchronisation


async def _hard_restart(broker: ApacheKafkaBroker) -> None:
    broker.kill9()
    await asyncio.to_thread(broker.restart, 120)  # the load goes on meanwhile


def _still_running(processes: list[Worker]) -> bool:
    return all(p.process is not None and p.process.poll() is None for p in processes)


def _produce_timed_out(relay: Worker) -> bool:
    """Whether a produce request of the relay's timed out (aiokafka's sender logs it)."""
    lines = relay.log_file.read_text(errors="replace").splitlines()
    return any("produce response" in line and "RequestTimedOutError" in line for line in lines)


async def test_a_frozen_then_restarted_broker_loses_and_doubles_nothing(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    broker = kafka_broker_factory()
    processes, topic, group = await _start_bus(workers, bus_database, broker)
    load = BusinessLoad(bus_database, topic, per_second=RATE_PER_SECOND)
    loading = asyncio.create_task(load.run())
    try:
        await wait_effects_at_least(
            bus_database, 100, WAIT_S
        )  # the bus is flowing before the fault
        await _freeze(broker)
        after_thaw_s = await _healed_within(bus_database, broker, group, topic, load)
        await _hard_restart(broker)
        after_restart_s = await _healed_within(bus_database, broker, group, topic, load)

        async def enough_committed() -> bool:
            return len(load.committed) >= MIN_OPERATIONS

        await _wait_for(f"{MIN_OPERATIONS} operations", enough_committed)
    finally:
        load.stop()
        await loading

    assert _still_running(processes), "the relay and the consumer must ride the faults out"
    assert _produce_timed_out(processes[0]), "no produce request was caught by the freeze"
    await wait_all_applied(bus_database, load.committed, deadline_s=WAIT_S)
    await wait_lag_zero(broker.bootstrap_servers, group, [topic], deadline_s=WAIT_S)
    await assert_exactly_once_in_order(bus_database, load.committed)
    assert after_thaw_s <= HEAL_DEADLINE_S, f"lag 0 only {after_thaw_s:.1f}s after the thaw"
    assert after_restart_s <= HEAL_DEADLINE_S, f"lag 0 only {after_restart_s:.1f}s after restart"
    # The resend of the request caught by the freeze was recognised: no second copy.
    assert await record_count(broker.bootstrap_servers, [topic]) == len(load.committed)


async def test_negative_control_without_idempotence_or_inbox_a_freeze_doubles_effects(
    workers: Callable[..., Worker], bus_database: str, kafka_broker_factory: KafkaBrokerFactory
) -> None:
    broker = kafka_broker_factory()
    without = ("--no-idempotence", "--no-dedup")
    _, topic, group = await _start_bus(workers, bus_database, broker, *without)
    load = BusinessLoad(bus_database, topic, per_second=RATE_PER_SECOND)
    loading = asyncio.create_task(load.run())
    try:
        await wait_effects_at_least(bus_database, 100, WAIT_S)
        await _freeze(broker)
        await wait_effects_at_least(bus_database, len(load.committed), WAIT_S)
    finally:
        load.stop()
        await loading

    await wait_all_applied(bus_database, load.committed, deadline_s=WAIT_S)
    await wait_lag_zero(broker.bootstrap_servers, group, [topic], deadline_s=WAIT_S)
    records = await record_count(broker.bootstrap_servers, [topic])
    report = await history(bus_database, load.committed)
    assert records > len(load.committed), f"no second copy: {records} records"
    assert report.duplicated > 0, (
        f"protection: idempotent producer and inbox; figure: duplicated; {report}"
    )
