"""A service runs the backbone in its lifespan: topics declared, outbox relayed, events consumed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from cascade.accounts.adapters import orm
from cascade.accounts.main import create_app
from cascade.accounts.settings import AccountsSettings
from cascade.shared import migrations
from cascade.shared.app import create_service_app
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.consumer import ConsumerConfig
from cascade.shared.messaging.outbox import add_to_outbox
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.runtime import event_consumer
from cascade.shared.messaging.safety import UnsafeConfigError
from cascade.shared.settings import DatabaseSettings, KafkaSettings
from cascade.shared.testing.bus import make_steps, step_registry
from cascade.shared.testing.harness import produce_envelopes
from cascade.shared.testing.kafka import (
    consume,
    create_topics,
    list_topics,
    produce,
    record_count,
    unique_name,
)
from cascade.shared.testing.tokens import LocalIssuer

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, database_url: str, bootstrap: str) -> AccountsSettings:
    return AccountsSettings(
        auth=LocalIssuer.create(tmp_path / "keys").auth_settings,
        database=DatabaseSettings(url=SecretStr(database_url)),
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        consume_events=False,  # the core-banking topics are shared by the whole test session
    )


async def test_a_service_declares_topics_and_relays_its_outbox(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", database_url)
    app = create_app(_settings(tmp_path, database_url, kafka_bootstrap_servers))
    (event,) = make_steps(1, 1)

    async with app.router.lifespan_context(app):

        async def declared() -> bool:
            return "accounts.delinquency.v1" in await list_topics(kafka_bootstrap_servers)

        await wait_until_async(declared, 60, "the service to declare its topics")
        # Other tests on this broker may have published there already: read past theirs.
        earlier = await record_count(kafka_bootstrap_servers, ["accounts.delinquency.v1"])
        async with app.state.sessions() as session, session.begin():
            await add_to_outbox(session, orm.outbox, [("accounts.delinquency.v1", event)])
        values = await consume(kafka_bootstrap_servers, "accounts.delinquency.v1", earlier + 1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            metrics = (await client.get("/metrics")).text

    assert any(event.id.encode() in value for value in values)
    assert f'cascade_events_published_total{{type="{event.type}"}} 1.0' in metrics
    assert "cascade_outbox_backlog" in metrics


async def test_a_service_consumer_applies_events_and_reports_metrics(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", database_url)
    topic, dead_letters = unique_name("events"), unique_name("dead-letters")
    await create_topics(kafka_bootstrap_servers, [topic, dead_letters], partitions=2)
    applied: list[str] = []

    async def handler(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        applied.extend(event.envelope.id for event in events)

    config = ConsumerConfig(
        group_id=unique_name("group"), topics=(topic,), dead_letter_topic=dead_letters
    )
    app = create_service_app(
        _settings(tmp_path, database_url, kafka_bootstrap_servers),
        lifespans=[event_consumer(config, step_registry(), orm.inbox, handler)],
    )
    produced = await produce_envelopes(kafka_bootstrap_servers, topic, make_steps(50, 5), copies=2)
    await produce(kafka_bootstrap_servers, topic, [b"not an event", b"{}"])  # two dead letters

    async with app.router.lifespan_context(app):

        async def all_applied() -> bool:
            return len(applied) == len(produced)

        await wait_until_async(all_applied, 60, "the service consumer to apply every event")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:

            async def caught_up() -> bool:  # the lag is set after a batch is applied
                lags = _lags((await client.get("/metrics")).text)
                return len(lags) == 2 and all(lag == 0 for lag in lags.values())

            await wait_until_async(caught_up, 60, "the consumer to report lag 0 on both partitions")
            metrics = (await client.get("/metrics")).text

    assert sorted(applied) == sorted(p.event_id for p in produced)  # each once: copies skipped
    assert 'cascade_events_consumed_total{type="cascade.test.step-recorded.v1"} 50.0' in metrics
    assert 'cascade_events_duplicate_total{type="cascade.test.step-recorded.v1"} 50.0' in metrics
    dead = "cascade_events_dead_lettered_total"
    assert f'{dead}{{reason="undecodable",type="unknown"}} 1.0' in metrics, metrics
    assert f'{dead}{{reason="schema_invalid",type="unknown"}} 1.0' in metrics, metrics
    batches = re.search(r"^cascade_handler_seconds_count (\S+)$", metrics, re.MULTILINE)
    assert batches is not None
    assert float(batches[1]) >= 1
    assert sorted(_lags(metrics)) == [f'partition="{p}",topic="{topic}"' for p in (0, 1)]
    inbox_bytes = re.search(r"^cascade_inbox_bytes (\S+)$", metrics, re.MULTILINE)
    assert inbox_bytes is not None
    assert float(inbox_bytes[1]) > 0  # measured as the service starts


def _lags(metrics: str) -> dict[str, float]:
    """The consumer lag gauge's samples: labels to value."""
    samples = re.findall(r"^cascade_consumer_lag\{(.*)\} (\S+)$", metrics, re.MULTILINE)
    return {labels: float(value) for labels, value in samples}


async def test_a_consumer_refused_as_unsafe_fails_the_liveness_check(
    tmp_path: Path, database_url: str, kafka_bootstrap_servers: str
) -> None:
    """Matrix R20 at run time: the consumer refuses to start with a batch timeout longer
    than its max_poll_interval_ms allows, and the service does not pass for alive."""
    await asyncio.to_thread(migrations.upgrade, "cascade.accounts", database_url)
    topic, dead_letters = unique_name("events"), unique_name("dead-letters")
    await create_topics(kafka_bootstrap_servers, [topic, dead_letters], partitions=1)

    async def handler(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        raise AssertionError("an unsafe consumer must not consume")

    group = unique_name("group")
    config = ConsumerConfig(
        group_id=group, topics=(topic,), dead_letter_topic=dead_letters, batch_timeout_s=3600
    )
    app = create_service_app(
        _settings(tmp_path, database_url, kafka_bootstrap_servers),
        lifespans=[event_consumer(config, step_registry(), orm.inbox, handler)],
    )

    answers: list[Any] = []

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:

                async def failing() -> bool:
                    return (await client.get("/healthz")).status_code == 503

                await wait_until_async(failing, 60, "the liveness check to fail")
                answers.append((await client.get("/healthz")).json())

    with pytest.raises(UnsafeConfigError):  # raised again as the service stops
        await serve()

    assert answers == [{"status": "failing", "ended": [f"consumer {group}"]}]
