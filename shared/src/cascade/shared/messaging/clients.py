"""The one way the platform builds Kafka clients, with its safety settings (matrix R20)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cascade.shared.settings import KafkaSettings

# A dead letter is the original record plus provenance headers: its topics accept larger
# messages than the broker's 1 MiB default, so that a record near that limit still fits.
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024


def make_producer(
    settings: KafkaSettings, *, client_id: str, max_request_size: int = 1024 * 1024
) -> AIOKafkaProducer:
    """Returns an unstarted producer: acks=all, idempotent wherever the broker allows."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id or client_id,
        acks="all",
        # Idempotence keeps retried batches from duplicating or reordering and stops batches
        # from expiring during a broker outage; only the embedded broker lacks it.
        enable_idempotence=settings.enable_idempotence,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=settings.request_timeout_ms,
        max_request_size=max_request_size,
    )


def make_consumer(
    settings: KafkaSettings,
    *,
    group_id: str,
    client_id: str,
    max_poll_interval_ms: int = 300_000,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
) -> AIOKafkaConsumer:
    """Returns an unstarted group consumer: manual commits, from the earliest offset."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id or client_id,
        group_id=group_id,
        # Offsets are committed by hand, after the database commit.
        enable_auto_commit=False,
        # A new group must read what is retained, not only what arrives later (R15).
        auto_offset_reset="earliest",
        max_poll_interval_ms=max_poll_interval_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms,
        request_timeout_ms=settings.request_timeout_ms,
    )
