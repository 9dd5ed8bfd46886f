"""The accounts service end to end: core banking's topics in, `accounts.delinquency.v1` out.

Scenarios (on-time payer, late then paid, partial payment, payment then reversal,
overpayment, closed in arrears) arrive day by day on `corebanking.events.v1`, each day
closed on `corebanking.business-days.v1`. Bad events go to the dead-letter topic with the
reason, and the events after them are still processed.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr
from sqlalchemy import text

from cascade.accounts.main import create_app
from cascade.accounts.settings import AccountsSettings
from cascade.shared.auth import Role
from cascade.shared.contracts import default_registry
from cascade.shared.infra.processes import wait_until_async
from cascade.shared.messaging.envelope import Envelope, decode
from cascade.shared.settings import DatabaseSettings, KafkaSettings
from cascade.shared.testing.corebanking import CoreBanking, business_day_closed
from cascade.shared.testing.kafka import group_lag, list_topics, unique_name
from cascade.shared.testing.tokens import LocalIssuer

from .scenarios import LAST_DAY, SCENARIOS, day

pytestmark = pytest.mark.integration

EVENTS, DAYS, OUT = (
    "corebanking.events.v1",
    "corebanking.business-days.v1",
    "accounts.delinquency.v1",
)


async def _produce(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await (await producer.send(topic, envelope.to_bytes(), key=envelope.key))
    finally:
        await producer.stop()


async def _read_all(
    bootstrap: str, topic: str, prefix: str
) -> list[tuple[bytes, dict[str, bytes]]]:
    """Returns every record of `topic` whose key starts with `prefix`, with its headers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [
                    (r.value or b"", {k: v for k, v in r.headers})
                    for r in records
                    if (r.key or b"").decode().startswith(prefix)
                ]
    finally:
        await consumer.stop()
    return found


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def _read(client: httpx.AsyncClient, issuer: LocalIssuer, account_id: str) -> Any:
    token = issuer.token(Role.COLLECTOR)
    response = await client.get(
        f"/v1/accounts/{account_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _pause(
    client: httpx.AsyncClient, issuer: LocalIssuer, account_id: str, *, start: date, end: date
) -> None:
    response = await client.post(
        f"/v1/accounts/{account_id}/pauses",
        json={"start_date": str(start), "end_date": str(end), "reason": "hardship"},
        headers={"Authorization": f"Bearer {issuer.token(Role.SUPERVISOR)}"},
    )
    assert response.status_code == 201, response.text


async def test_scenarios_flow_from_core_banking_to_delinquency_events(
    tmp_path: Path, accounts_database: str, kafka_bootstrap_servers: str
) -> None:
    prefix = unique_name("E2E") + "-"
    issuer = LocalIssuer.create(tmp_path / "keys")
    settings = AccountsSettings(
        auth=issuer.auth_settings,
        database=DatabaseSettings(url=SecretStr(accounts_database)),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers),
        consumer_group=(group := unique_name("accounts")),
    )
    app = create_app(settings)
    histories = {name: build(CoreBanking(f"{prefix}{name}")) for name, build in SCENARIOS.items()}
    early = CoreBanking(f"{prefix}held")  # payments before the account opens: kept
    wrong = CoreBanking(f"{prefix}held", currency="USD")
    conflict = CoreBanking(f"{prefix}partial")
    histories["held"] = [
        (2, early.payment("PAY-1", day(2), 10_000)),
        (2, wrong.installment("INS-9", day(9), 10_000)),  # refused when the account opens
        (3, early.opened(day(3))),
        (3, early.installment("INS-1", day(4), 10_000)),
    ]
    histories["conflict"] = [(10, conflict.payment("PAY-1", day(7), 999))]  # same id, new content
    paused = CoreBanking(f"{prefix}paused")  # paused by a supervisor on day 10, for 10 days
    histories["paused"] = [(0, paused.opened(day(0))), (0, paused.installment("I", day(5), 5_000))]

    async def scalar(sql: str) -> object:
        async with app.state.sessions() as session:
            return await session.scalar(text(sql)) or 0

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://svc") as client,
    ):

        async def declared() -> bool:
            return {EVENTS, DAYS, OUT} <= set(await list_topics(kafka_bootstrap_servers))

        await wait_until_async(declared, 60, "the service to declare its topics")
        for n in range(LAST_DAY + 1):
            todays = [e for arrivals in histories.values() for d, e in arrivals if d == n]
            await _produce(kafka_bootstrap_servers, EVENTS, todays)

            async def applied() -> bool:
                # The two topics have no order between them: close a day only once its
                # account events are applied, as core banking's own close would follow them.
                return await group_lag(kafka_bootstrap_servers, group, [EVENTS]) == 0

            await wait_until_async(applied, 60, f"the account events of day {n}")
            if n == 10:
                await _pause(client, issuer, f"{prefix}paused", start=day(10), end=day(20))
            await _produce(kafka_bootstrap_servers, DAYS, [business_day_closed(day(n))])

            async def closed(n: int = n) -> bool:
                return await scalar("SELECT max(business_date) FROM business_day") == day(n)

            await wait_until_async(closed, 60, f"the close of day {n}")
        states = {}
        for name in histories:
            if name != "conflict":
                read = await _read(client, issuer, f"{prefix}{name}")
                states[name] = (read["status"], read["days_past_due"], read["arrears_minor"])
        history = (
            await client.get(
                f"/v1/accounts/{prefix}reversal/delinquency-history",
                headers={"Authorization": f"Bearer {issuer.token(Role.COLLECTOR)}"},
            )
        ).json()

        async def relayed() -> bool:
            return await scalar("SELECT count(*) FROM outbox_pending") == 0

        await wait_until_async(relayed, 60, "the outbox to drain")
        # Days each inbox row is kept: its topic's, from the topology (a batch takes the
        # longest of its topics'): 148 for corebanking.events.v1, 483 for business days.
        kept_days = await scalar(
            "SELECT array_agg(DISTINCT days ORDER BY days) FROM (SELECT round(extract(epoch"
            " FROM expires_at - processed_at) / 86400)::int AS days FROM inbox_message) k"
        )
    published = await _read_all(kafka_bootstrap_servers, OUT, prefix)
    dead = await _read_all(kafka_bootstrap_servers, "accounts.dead-letters.v1", prefix)

    registry = default_registry()
    types = [registry.validate(decode(value)).envelope.type for value, _ in published]
    assert states == {
        "on-time": ("current", 0, 0),
        "late": ("current", 0, 0),
        "partial": ("delinquent", 20, 100_000),  # INS-1 paid in two parts; INS-2 unpaid
        "reversal": ("delinquent", 35, 100_000),
        "overpaid": ("delinquent", 20, 20_000),
        "closed": ("closed", 9, 80_000),
        "held": ("current", 0, 0),
        "paused": ("delinquent", 25, 5_000),  # 35 days late, 10 of them paused
    }
    # Paid on day 4, reversed on day 9: delinquent from the close of day 9, as if unpaid.
    assert [(b["bucket"], b["entered_on"]) for b in history["buckets"]] == [
        ("1-29", str(day(9))),
        ("30-59", str(day(35))),
    ]
    assert {h["dlt-reason"] for _, h in dead} == {b"currency_mismatch", b"identity_conflict"}
    assert len(dead) == 2
    # The held event refused at opening keeps the provenance of the record it came in.
    (held,) = [h for _, h in dead if h["dlt-reason"] == b"currency_mismatch"]
    assert held["dlt-original-topic"] == EVENTS.encode()
    assert int(held["dlt-original-offset"]) >= 0
    assert types.count("cascade.accounts.delinquency-started.v1") == 6
    assert types.count("cascade.accounts.pause-started.v1") == 1
    assert types.count("cascade.accounts.pause-ended.v1") == 1
    assert "cascade.accounts.account-cured.v1" in types
    assert "cascade.accounts.account-closed.v1" in types
    assert kept_days == [148, 483]
