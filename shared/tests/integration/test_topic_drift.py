"""Topics that exist but not as declared: reported, aligned on demand, and the inbox's keep
follows the broker where it keeps records longer than declared."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from aiokafka.admin import NewTopic

from cascade.shared.cli import main
from cascade.shared.infra.tansu import EmbeddedKafkaBroker
from cascade.shared.messaging.admin import apply_topology, ensure_topics
from cascade.shared.messaging.inbox_keep import read_inbox_keep_s
from cascade.shared.messaging.tables import INBOX_KEEP_UNLISTED_S
from cascade.shared.messaging.topic_drift import topics_on_broker, topology_drift
from cascade.shared.messaging.topology import DAY_MS, DAY_S, inbox_keep_s
from cascade.shared.testing.fixtures import KafkaBrokerFactory

pytestmark = pytest.mark.integration


def test_topics_apply_reports_drift_and_aligns_only_the_platforms_own_topics(
    kafka_broker_factory: KafkaBrokerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = kafka_broker_factory().bootstrap_servers
    # An old release's topic, with a config an operator set on it since.
    two_days = {"retention.ms": str(2 * DAY_MS), "message.timestamp.type": "LogAppendTime"}
    made_elsewhere = [
        NewTopic("accounts.delinquency.v1", 12, 1, topic_configs=two_days),
        NewTopic("corebanking.events.v1", 24, 1),  # as core banking made it
    ]
    asyncio.run(ensure_topics(bootstrap, made_elsewhere))
    core_retention = _retention(bootstrap, "corebanking.events.v1")
    apply = ["topics", "apply", "--bootstrap-servers", bootstrap]

    assert main([*apply, "--check"]) == 1
    reported = capsys.readouterr().err.splitlines()
    assert reported == [  # in the declaration's order
        f"corebanking.events.v1 is not as declared: partitions 24, declared 12; "
        f"retention.ms {core_retention}, declared {30 * DAY_MS}",
        f"accounts.delinquency.v1 is not as declared: retention.ms {2 * DAY_MS}, "
        f"declared {30 * DAY_MS}",
    ]

    assert main([*apply, "--align-configs", "--check"]) == 1  # core banking's still differs
    assert capsys.readouterr().out.splitlines()[-1] == "configs aligned: accounts.delinquency.v1"
    aligned = _configs(bootstrap, "accounts.delinquency.v1")
    assert aligned["retention.ms"] == str(30 * DAY_MS)
    assert aligned["message.timestamp.type"] == "LogAppendTime"  # kept, not reset
    assert _retention(bootstrap, "corebanking.events.v1") == core_retention  # not ours
    assert list(asyncio.run(topology_drift(bootstrap))) == ["corebanking.events.v1"]
    assert main(apply) == 0  # without --check, drift is reported, not failed on


def _configs(bootstrap: str, name: str) -> Mapping[str, str]:
    return asyncio.run(topics_on_broker(bootstrap, [name]))[name].configs


def _retention(bootstrap: str, name: str) -> str:
    return _configs(bootstrap, name)["retention.ms"]


async def test_the_inbox_keeps_ids_as_long_as_the_broker_keeps_the_topic(
    tansu: EmbeddedKafkaBroker,
) -> None:
    bootstrap = tansu.bootstrap_servers
    kept_400_days = {"retention.ms": str(400 * DAY_MS)}
    await ensure_topics(
        bootstrap, [NewTopic("corebanking.business-days.v1", 1, 1, topic_configs=kept_400_days)]
    )
    await apply_topology(bootstrap)
    declared = inbox_keep_s("accounts")

    keeps = await read_inbox_keep_s(bootstrap, "accounts", declared, asyncio.Event())

    # 400 days plus a 7-day roll, then the dead-letter and replay topics' 90 and 7 days,
    # each plus the roll: 518 days, where the declared 365 gave 483.
    assert keeps["corebanking.business-days.v1"] == 518 * DAY_S
    assert declared["corebanking.business-days.v1"] == 483 * DAY_S
    assert keeps["corebanking.events.v1"] == declared["corebanking.events.v1"]


async def test_a_topic_kept_for_ever_keeps_its_ids_longest(tansu: EmbeddedKafkaBroker) -> None:
    compacted = {"cleanup.policy": "compact"}
    await ensure_topics(
        tansu.bootstrap_servers,
        [NewTopic("corebanking.events.v1", 12, 1, topic_configs=compacted)],
    )

    declared = inbox_keep_s("accounts")
    keeps = await read_inbox_keep_s(tansu.bootstrap_servers, "accounts", declared, asyncio.Event())

    assert keeps["corebanking.events.v1"] == INBOX_KEEP_UNLISTED_S
    assert keeps["corebanking.business-days.v1"] == declared["corebanking.business-days.v1"]


async def test_an_unreachable_broker_is_waited_for_until_the_service_stops() -> None:
    declared, stop = inbox_keep_s("accounts"), asyncio.Event()
    reading = asyncio.create_task(read_inbox_keep_s("127.0.0.1:1", "accounts", declared, stop))
    try:
        _, pending = await asyncio.wait({reading}, timeout=1.0)
        assert pending == {reading}  # still retrying: the consumer could not consume anyway
    finally:
        stop.set()

    assert await asyncio.wait_for(reading, 5.0) == declared
