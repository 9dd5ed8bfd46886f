"""A consumer or relay process for the fault tests, so that a test can SIGKILL it.

    python -m cascade.shared.testing.bus_worker consume --db URL --bootstrap HOST:PORT ...
    python -m cascade.shared.testing.bus_worker relay --db URL --bootstrap HOST:PORT ...

Crash points are armed with CASCADE_CRASH_AT / CASCADE_CRASH_AFTER (messaging.faults).
SIGTERM stops the process cleanly (the consumer leaves its group).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from cascade.shared.messaging.clients import DEAD_LETTER_MAX_BYTES, make_consumer, make_producer
from cascade.shared.messaging.consumer import BatchHandler, ConsumerConfig, EventConsumer
from cascade.shared.messaging.metrics import BusMetrics, counter_total
from cascade.shared.messaging.registry import DecodedEvent
from cascade.shared.messaging.relay import OutboxRelay, RelaySettings
from cascade.shared.settings import KafkaSettings
from cascade.shared.testing.bus import INBOX, OUTBOX, record_effects, step_registry
from cascade.shared.testing.commit_faults import refuse_every_nth_offset_commit


class PoisonedStep(Exception):
    """The test handler's deliberate, permanent failure on one step."""


def _report(metrics: BusMetrics) -> None:
    duplicates, consumed = counter_total(metrics.duplicates), counter_total(metrics.consumed)
    print(
        json.dumps({"pid": os.getpid(), "consumed": consumed, "duplicates": duplicates}), flush=True
    )


def _handler(
    worker: str,
    args: argparse.Namespace,
    metrics: BusMetrics,
    sessions: async_sessionmaker[AsyncSession],
) -> BatchHandler:
    async def handle(session: AsyncSession, events: Sequence[DecodedEvent]) -> None:
        if args.fail_seq is not None and any(
            getattr(e.payload, "seq", None) == args.fail_seq for e in events
        ):
            raise PoisonedStep(f"step {args.fail_seq} is poisoned")
        if args.effects_apart:  # the broken handler of R2's control: its own transaction
            async with sessions() as own, own.begin():
                await record_effects(own, events, worker)
        else:
            await record_effects(session, events, worker)
        if args.hold_ms:  # a slow business rule: the transaction stays open this long
            await asyncio.sleep(args.hold_ms / 1000)
        _report(metrics)

    return handle


async def _consume(args: argparse.Namespace, stop: asyncio.Event) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        enable_idempotence=not args.no_idempotence,
        request_timeout_ms=args.request_timeout_ms,
    )
    if args.refuse_commits_every:
        refuse_every_nth_offset_commit(args.refuse_commits_every)
    engine = create_async_engine(args.db, pool_size=2)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    metrics = BusMetrics()
    config = ConsumerConfig(
        group_id=args.group,
        topics=tuple(args.topic),
        dead_letter_topic=args.dead_letter_topic,
        max_records=args.max_records,
        max_attempts=args.max_attempts,
        commit_interval_s=args.commit_interval_s,
        dedup=not args.no_dedup,
        embedded_broker=args.no_idempotence,
        offsets_after_db=not args.offsets_first,
        retry_unavailable=not args.count_unavailable,
    )
    consumer = EventConsumer(
        config,
        consumer_factory=lambda: make_consumer(
            kafka,
            group_id=args.group,
            client_id=f"worker-{os.getpid()}",
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000,
        ),
        producer_factory=lambda: make_producer(
            kafka, client_id=f"worker-dlq-{os.getpid()}", max_request_size=DEAD_LETTER_MAX_BYTES
        ),
        sessions=sessions,
        inbox_table=INBOX,
        registry=step_registry(),
        handler=_handler(f"worker-{os.getpid()}", args, metrics, sessions),
        metrics=metrics,
    )
    try:
        await consumer.run(stop)
    finally:
        await engine.dispose()


async def _relay(args: argparse.Namespace, stop: asyncio.Event) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        enable_idempotence=not args.no_idempotence,
        request_timeout_ms=args.request_timeout_ms,
    )
    engine = create_async_engine(args.db, pool_size=2)
    relay = OutboxRelay(
        engine,
        OUTBOX,
        lambda: make_producer(kafka, client_id=f"relay-{os.getpid()}"),
        metrics=BusMetrics(),
        settings=RelaySettings(
            batch_size=args.batch_size,
            partition_by_key=not args.skip_locked_claim,
            embedded_broker=args.no_idempotence,
        ),
    )
    try:
        await relay.run(stop)
    finally:
        await engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bus_worker")
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("consume", "relay"):
        command = sub.add_parser(role)
        command.add_argument("--db", required=True)
        command.add_argument("--bootstrap", required=True)
        command.add_argument("--no-idempotence", action="store_true")
        command.add_argument("--request-timeout-ms", type=int, default=30_000)
    consume = sub.choices["consume"]
    consume.add_argument("--group", required=True)
    consume.add_argument("--topic", action="append", required=True)
    consume.add_argument("--dead-letter-topic", required=True)
    consume.add_argument("--max-records", type=int, default=100)
    consume.add_argument("--max-attempts", type=int, default=3)
    consume.add_argument("--fail-seq", type=int)
    consume.add_argument("--no-dedup", action="store_true")
    consume.add_argument("--offsets-first", action="store_true")
    consume.add_argument("--count-unavailable", action="store_true")
    consume.add_argument("--hold-ms", type=int, default=0)
    consume.add_argument("--refuse-commits-every", type=int, default=0)
    consume.add_argument("--commit-interval-s", type=float, default=1.0)
    consume.add_argument("--effects-apart", action="store_true")
    relay = sub.choices["relay"]
    relay.add_argument("--batch-size", type=int, default=500)
    relay.add_argument("--skip-locked-claim", action="store_true")
    return parser


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await (_consume(args, stop) if args.role == "consume" else _relay(args, stop))


if __name__ == "__main__":
    asyncio.run(_main(_parser().parse_args(sys.argv[1:])))
