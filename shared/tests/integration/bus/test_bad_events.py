"""R7 and R8: poison records and unknown types are dead-lettered at once; the stream moves on.

R7: malformed records (truncated JSON, bad UTF-8, a ~900 KB blob, wrong JSON types, a
missing envelope attribute) interleaved with 1,000 good events: exactly one dead letter
each, with full provenance headers and 0 retries; every good event applied exactly once.
R8: an unknown type and an unsupported major version are dead-lettered with their
reason; a v1 event with unknown extra fields is applied (tolerant reader). A handler that
keeps failing on one event dead-letters it after max_attempts; the partition moves on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cascade.shared.messaging.envelope import Envelope, new_envelope
from cascade.shared.messaging.replay import DeadLetterRecord, read_dead_letters
from cascade.shared.testing.bus import STEP_RECORDED, StepRecorded, make_steps
from cascade.shared.testing.harness import (
    Worker,
    history,
    produce_envelopes,
    wait_all_applied,
    wait_effects_at_least,
    wait_lag_zero,
)
from cascade.shared.testing.history import Produced

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_GOOD = 1000
DEADLINE_S = 120.0
LAG_ZERO_S = 10.0  # R7: lag 0 within 10 s, counted from the consumer's first applied event
MAX_ATTEMPTS = 3
ATTEMPTS_ARGS = ("--max-attempts", str(MAX_ATTEMPTS))
HEADERS = (
    "dlt-original-topic",
    "dlt-original-partition",
    "dlt-original-offset",
    "dlt-original-timestamp",
    "dlt-original-consumer-group",
    "dlt-reason",
    "dlt-exception-fqcn",
    "dlt-exception-message",
    "dlt-attempts",
    "dlt-event-type",
    "dlt-event-id",
    "dlt-service-version",
)
# Canary personal data (fake): none of it may appear in cleartext in any header.
CANARY_PHONE = "+36 30 123 4567"
CANARY_NATIONAL_ID = "110101199003074477"
CANARY_EMAIL = "jane.canary@example.com"
CANARIES = (CANARY_PHONE, "+36301234567", CANARY_NATIONAL_ID, CANARY_EMAIL)


@dataclass(frozen=True)
class Bad:
    """A record that must be dead-lettered, and where it was written."""

    name: str
    value: bytes
    key: bytes
    reason: str
    timestamp_ms: int = 0
    partition: int = -1
    offset: int = -1


def _step_body(account: str, seq: object, **extra: object) -> dict[str, Any]:
    body = json.loads(
        new_envelope(
            type=STEP_RECORDED,
            source="cascade-tests",
            subject=account,
            data=StepRecorded(account_id=account, seq=0),
        ).to_bytes()
    )
    body["data"]["seq"] = seq
    body.update(extra)
    return dict(body)


def _poison() -> list[Bad]:
    wrong_types = _step_body("ACC-00001", "abc")
    wrong_types["data"]["note"] = f"call {CANARY_PHONE} / {CANARY_EMAIL} / {CANARY_NATIONAL_ID}"
    missing_id = _step_body("ACC-00002", 1)
    missing_id["data"]["note"] = f"{CANARY_EMAIL} {CANARY_NATIONAL_ID}"
    del missing_id["id"]
    return [
        Bad("truncated-json", b'{"bad', b"ACC-00003", "undecodable"),
        Bad("bad-utf8", b"\xff\xfe", b"ACC-00004", "undecodable"),
        Bad("900kb-blob", b"\x00blob" * (900 * 1024 // 5), b"ACC-00005", "undecodable"),
        Bad("wrong-types", json.dumps(wrong_types).encode(), b"ACC-00001", "schema_invalid"),
        Bad("missing-id", json.dumps(missing_id).encode(), b"ACC-00002", "schema_invalid"),
    ]


async def _produce_mixed(
    bootstrap: str, topic: str, good: Sequence[Envelope], bad: Sequence[Bad]
) -> tuple[list[Produced], list[Bad]]:
    """Sends `good` with each of `bad` interleaved at even intervals; returns what was acked."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        every = max(len(good) // (len(bad) + 1), 1)
        sent_good: list[asyncio.Future[Any]] = []
        sent_bad: list[tuple[Bad, int, asyncio.Future[Any]]] = []
        for index, envelope in enumerate(good):
            sent_good.append(await producer.send(topic, envelope.to_bytes(), key=envelope.key))
            if index % every == every - 1 and len(sent_bad) < len(bad):
                item = bad[len(sent_bad)]
                stamp = int(datetime.now(UTC).timestamp() * 1000)
                future = await producer.send(topic, item.value, key=item.key, timestamp_ms=stamp)
                sent_bad.append((item, stamp, future))
        for delivery in sent_good:
            await delivery
        written = []
        for item, stamp, future in sent_bad:
            meta = await future
            where = {"timestamp_ms": stamp, "partition": meta.partition, "offset": meta.offset}
            written.append(replace(item, **where))
    finally:
        await producer.stop()
    produced = [Produced(e.id, e.subject, int(e.data["seq"])) for e in good]
    return produced, written


async def _send_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _dead_letters_when(bootstrap: str, topic: str, count: int) -> list[DeadLetterRecord]:
    """Returns the dead letters once the group is caught up (lag 0 means all are written)."""
    letters = await read_dead_letters(bootstrap, "bus-tests", dead_letter_topic=topic)
    assert len(letters) == count, [letter.headers.get("dlt-reason") for letter in letters]
    return letters


def _assert_no_canary(letters: Sequence[DeadLetterRecord]) -> None:
    for letter in letters:
        for name, value in letter.headers.items():
            for canary in CANARIES:
                assert canary not in value, f"personal data in header {name}"


async def test_poison_records_are_dead_lettered_once_with_provenance_and_good_ones_applied(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    produced, poison = await _produce_mixed(bootstrap, events, make_steps(N_GOOD, 50), _poison())
    worker, group = consumer_worker(*ATTEMPTS_ARGS, max_records=100)
    worker.start()

    await wait_effects_at_least(bus_database, 1, DEADLINE_S)  # joined its group, applying
    # The matrix's bound: the poison does not hold its partition up.
    await wait_lag_zero(bootstrap, group, [events], LAG_ZERO_S)
    await wait_all_applied(bus_database, produced, DEADLINE_S)
    assert worker.running(), "the consumer crashed"
    worker.stop()

    letters = await _dead_letters_when(bootstrap, dlt, len(poison))
    by_origin = {
        (
            int(letter.header("dlt-original-partition")),
            int(letter.header("dlt-original-offset")),
        ): letter
        for letter in letters
    }
    for bad in poison:
        letter = by_origin[(bad.partition, bad.offset)]
        assert set(HEADERS) <= set(letter.headers), bad.name
        assert letter.header("dlt-original-topic") == events
        assert letter.header("dlt-original-timestamp") == str(bad.timestamp_ms)
        assert letter.header("dlt-original-consumer-group") == group
        assert letter.header("dlt-reason") == bad.reason, bad.name
        assert letter.header("dlt-attempts") == "1", f"{bad.name} was retried"
        assert letter.header("dlt-exception-fqcn")
        assert letter.header("dlt-exception-message")
        assert letter.header("dlt-service-version")
        assert (letter.key, letter.value) == (bad.key, bad.value), "original record kept"
    _assert_no_canary(letters)
    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)


async def test_unknown_type_and_major_are_dead_lettered_and_extra_fields_are_tolerated(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    unknown_type = f"cascade.test.call {CANARY_PHONE} {CANARY_EMAIL} {CANARY_NATIONAL_ID}.v1"
    tolerant = _step_body("ACC-00007", 10_000, traceparent="00-abc-01", futureattr={"x": 1})
    tolerant["data"] |= {"priority": "high", "channel": {"sms": True}}
    bad = [
        Bad(
            "unknown-type",
            json.dumps(_step_body("ACC-00008", 1, type=unknown_type)).encode(),
            b"ACC-00008",
            "unknown_type",
        ),
        Bad(
            "v99",
            json.dumps(_step_body("ACC-00009", 1, type=f"{STEP_RECORDED[:-3]}.v99")).encode(),
            b"ACC-00009",
            "unsupported_version",
        ),
    ]
    produced, written = await _produce_mixed(bootstrap, events, make_steps(N_GOOD, 50), bad)
    await _send_raw(bootstrap, events, b"ACC-00007", json.dumps(tolerant).encode())
    produced.append(Produced(str(tolerant["id"]), "ACC-00007", 10_000))
    worker, group = consumer_worker(*ATTEMPTS_ARGS, max_records=100)
    worker.start()

    await wait_effects_at_least(bus_database, 1, DEADLINE_S)  # joined its group, applying
    # The matrix's bound: the poison does not hold its partition up.
    await wait_lag_zero(bootstrap, group, [events], LAG_ZERO_S)
    await wait_all_applied(bus_database, produced, DEADLINE_S)
    assert worker.running(), "the consumer crashed"
    worker.stop()

    letters = await _dead_letters_when(bootstrap, dlt, len(bad))
    reasons = {(int(x.header("dlt-original-offset")), x.header("dlt-reason")) for x in letters}
    assert reasons == {(b.offset, b.reason) for b in written}
    _assert_no_canary(letters)
    report = await history(bus_database, produced)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)


async def test_event_the_handler_keeps_refusing_is_dead_lettered_after_max_attempts(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    refused = new_envelope(
        type=STEP_RECORDED,
        source="cascade-tests",
        subject="ACC-00000",
        data=StepRecorded(account_id="ACC-00000", seq=5_000),
    )
    before = await produce_envelopes(bootstrap, events, make_steps(N_GOOD // 2, 50))
    await produce_envelopes(bootstrap, events, [refused])
    after = await produce_envelopes(
        bootstrap, events, make_steps(N_GOOD // 2, 50, start=N_GOOD // 2)
    )
    worker, group = consumer_worker("--fail-seq", "5000", *ATTEMPTS_ARGS, max_records=100)
    worker.start()

    await wait_all_applied(bus_database, before + after, DEADLINE_S)
    await wait_lag_zero(bootstrap, group, [events], DEADLINE_S)
    worker.stop()

    (letter,) = await _dead_letters_when(bootstrap, dlt, 1)
    assert letter.header("dlt-reason") == "handler_failed"
    assert letter.header("dlt-attempts") == str(MAX_ATTEMPTS)
    assert letter.header("dlt-event-id") == refused.id
    assert letter.header("dlt-event-type") == STEP_RECORDED
    assert letter.header("dlt-exception-fqcn").endswith("PoisonedStep")
    report = await history(bus_database, before + after)
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0), str(report)
    assert report.order_violations == 0, str(report)


async def test_a_poison_record_near_the_broker_limit_is_still_dead_lettered(
    consumer_worker: Callable[..., tuple[Worker, str]],
    bus_database: str,
    kafka_bootstrap_servers: str,
    bus_topics: tuple[str, str],
) -> None:
    """With its provenance headers a dead letter outgrows the 1 MiB default: it must fit."""
    bootstrap, (events, dlt) = kafka_bootstrap_servers, bus_topics
    huge = Bad("near-1mib", b"\x00" * 1_048_400, b"ACC-00007", "undecodable")
    produced, poison = await _produce_mixed(bootstrap, events, make_steps(N_GOOD, 50), [huge])
    worker, group = consumer_worker(*ATTEMPTS_ARGS, max_records=100)
    worker.start()

    await wait_effects_at_least(bus_database, 1, DEADLINE_S)  # joined its group, applying
    # The matrix's bound: the poison does not hold its partition up.
    await wait_lag_zero(bootstrap, group, [events], LAG_ZERO_S)
    await wait_all_applied(bus_database, produced, DEADLINE_S)
    assert worker.running(), "the consumer crashed"
    worker.stop()

    (letter,) = await _dead_letters_when(bootstrap, dlt, 1)
    assert letter.header("dlt-original-offset") == str(poison[0].offset)
    assert letter.value == huge.value
