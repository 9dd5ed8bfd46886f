"""Watching one `make bench-aging` close from outside the service, and verifying it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from cascade.accounts.benchmarks.portfolio import CLOSE, PREVIOUS, Expected
from cascade.accounts.main import create_app
from cascade.accounts.settings import AccountsSettings
from cascade.shared.contracts import accounts as contract
from cascade.shared.contracts import default_registry
from cascade.shared.messaging.admin import partitions_on_broker
from cascade.shared.settings import DatabaseSettings, KafkaSettings
from cascade.shared.testing.corebanking import business_day_closed
from cascade.shared.testing.kafka import group_lag
from cascade.shared.testing.tokens import LocalIssuer

BUSINESS_DAYS_TOPIC = "corebanking.business-days.v1"
SAMPLE = 100  # published events decoded and checked against the database
DEADLINE_S = 900.0


async def _end_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    ends = await consumer.end_offsets(partitions)
    return sum(ends.values())


async def _wait(condition: Any, what: str, poll_s: float) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {DEADLINE_S:.0f} s")
        await asyncio.sleep(poll_s)


def _slow_statements(log_file: Path, offset: int) -> list[tuple[float, str]]:
    """Returns (ms, first words) of the statements PostgreSQL logged after `offset`."""
    with log_file.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode("utf-8", "replace").splitlines()
    found: list[tuple[float, str]] = []
    for n, line in enumerate(lines):
        match = re.search(r"duration: ([\d.]+) ms\s+(?:[^:]*): ?(.*)$", line)
        if not match:
            continue
        words = match.group(2).strip()
        for more in lines[n + 1 : n + 8]:
            if words or re.match(r"^\d{4}-\d\d-\d\d ", more):
                break
            words = more.strip()
        found.append((float(match.group(1)), " ".join(words.split())[:100]))
    return found


class Probe:
    """Watches the close from outside the service: its row, the outbox, the topic."""

    def __init__(self, url: str, bootstrap: str) -> None:
        self.engine = create_async_engine(url, poolclass=NullPool)
        self.bootstrap = bootstrap
        self.offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.offsets.start()
        await self.producer.start()
        self.partitions = await partitions_on_broker(self.bootstrap, [contract.TOPIC])

    async def stop(self) -> None:
        await self.producer.stop()
        await self.offsets.stop()
        await self.engine.dispose()

    async def send_close(self, business_date: date) -> None:
        envelope = business_day_closed(business_date)
        delivery = await self.producer.send(
            BUSINESS_DAYS_TOPIC, envelope.to_bytes(), key=envelope.key
        )
        await delivery

    async def published(self) -> int:
        return await _end_offsets(self.offsets, self.partitions)

    async def unpublished(self) -> int:
        async with self.engine.connect() as connection:
            found = await connection.scalar(text("SELECT count(*) FROM outbox_pending"))
        return int(found or 0)


def settings(home: Path, url: str, bootstrap: str) -> AccountsSettings:
    """Returns the accounts service's settings for this database and broker."""
    return AccountsSettings(
        auth=LocalIssuer.create(home / "keys").auth_settings,
        database=DatabaseSettings(url=SecretStr(url)),
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
    )


async def time_close(
    home: Path, url: str, bootstrap: str, log_file: Path, expected: Expected
) -> tuple[float, float, float, int, int, list[tuple[float, str]]]:
    """Runs the service and closes CLOSE; returns its timings and what it wrote."""
    app = create_app(settings(home, url, bootstrap))
    probe = Probe(url, bootstrap)
    await probe.start()
    try:
        async with app.router.lifespan_context(app):
            # Warm-up: the consumer joins its group and reads a date already closed (ignored).
            await probe.send_close(PREVIOUS)

            async def caught_up() -> bool:
                return await group_lag(bootstrap, "accounts", [BUSINESS_DAYS_TOPIC]) == 0

            await _wait(caught_up, "consumer caught up", 0.2)
            await asyncio.sleep(1.0)  # the relay has joined and holds its key slots
            before = await probe.published()
            log_offset = (await asyncio.to_thread(log_file.stat)).st_size
            async with probe.engine.connect() as connection:
                server_start = await connection.scalar(text("SELECT clock_timestamp()"))
            started = time.perf_counter()
            await probe.send_close(CLOSE)
            row: Any = None

            async def closed() -> bool:
                nonlocal row
                async with probe.engine.connect() as connection:
                    row = (
                        await connection.execute(
                            text(
                                "SELECT processed_at, accounts_aged, events_written "
                                "FROM business_day WHERE business_date = :d"
                            ),
                            {"d": CLOSE},
                        )
                    ).one_or_none()
                return row is not None

            await _wait(closed, "business_day row", 0.01)
            sql_seconds = time.perf_counter() - started
            pickup = (row.processed_at - server_start).total_seconds()
            written = int(row.events_written)

            async def all_published() -> bool:
                return await probe.published() - before >= written

            async def outbox_empty() -> bool:
                return await probe.unpublished() == 0

            await _wait(all_published, "events on the topic", 0.02)
            await _wait(outbox_empty, "empty outbox", 0.01)
            close_seconds = time.perf_counter() - started
            after = await probe.published()
    finally:
        await probe.stop()
    assert after - before == written, f"{after - before} records for {written} events"
    assert written == expected.events, f"{written} events written, {expected.events} expected"
    assert int(row.accounts_aged) == expected.aged
    statements = _slow_statements(log_file, log_offset)
    return close_seconds, sql_seconds, pickup, written, int(row.accounts_aged), statements


async def verify_sample(url: str, bootstrap: str, expected: Expected) -> dict[str, int]:
    """Decodes a random sample of the published events and checks them against the
    database; returns the events written by type (from the outbox)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT event_type, count(*) FROM outbox_message GROUP BY event_type")
            )
            by_type = {str(r[0]): int(r[1]) for r in rows}
            picked = await connection.execute(
                text("SELECT event_id FROM outbox_message ORDER BY random() LIMIT :n"),
                {"n": SAMPLE},
            )
            wanted = {str(r[0]) for r in picked}
            records = await _read_events(bootstrap, wanted)
            registry = default_registry()
            for key, value in records:
                event = registry.decode(value, key)
                payload: Any = event.payload
                account = (
                    await connection.execute(
                        text(
                            "SELECT status, days_past_due, bucket, arrears_minor, customer "
                            "FROM account JOIN account_contact USING (account_id) "
                            "WHERE account_id = :a"
                        ),
                        {"a": payload.account_id},
                    )
                ).one()
                figures = payload.delinquency
                assert figures.business_date == CLOSE
                assert (figures.status, figures.days_past_due, figures.bucket) == (
                    account.status,
                    account.days_past_due,
                    account.bucket,
                )
                assert figures.arrears_minor == account.arrears_minor
                if event.envelope.type == contract.DELINQUENCY_STARTED:
                    customer = account.customer
                    stored = json.loads(customer) if isinstance(customer, str) else customer
                    assert payload.contact.model_dump(mode="json", exclude_none=True) == stored
    finally:
        await engine.dispose()
    assert len(records) == len(wanted), f"{len(records)} of {len(wanted)} sampled events found"
    assert by_type.get(contract.DELINQUENCY_UPDATED, 0) == expected.aged
    assert by_type.get(contract.DELINQUENCY_STARTED, 0) == expected.started
    assert by_type.get(contract.BUCKET_CHANGED, 0) == expected.bucket_changed
    return by_type


async def _read_events(bootstrap: str, event_ids: set[str]) -> list[tuple[bytes, bytes]]:
    """Returns (key, value) of the records on the topic whose event id is in `event_ids`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        partitions = await partitions_on_broker(bootstrap, [contract.TOPIC])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    if json.loads(record.value)["id"] in event_ids:
                        found.append((record.key, record.value))
    finally:
        await consumer.stop()
    return found
