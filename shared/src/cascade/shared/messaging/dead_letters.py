"""Dead letters: a bad or failing event, with its provenance and the reason, never silently lost.

The headers follow Spring Kafka's DeadLetterPublishingRecoverer (reliability matrix A12).
The message is sanitized: personal data never reaches a dead-letter header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from cascade.shared.logging import mask_text

MAX_MESSAGE_CHARS = 500
_TYPE_SHAPE = re.compile(r"[a-z][a-z0-9.\-]{0,119}")
_DIGIT_RUN = re.compile(r"\d{6,}")


def safe_event_type(event_type: str) -> str:
    """Returns a sender-supplied type fit for a header: type-shaped, no long digit runs."""
    if not event_type:
        return ""
    if not _TYPE_SHAPE.fullmatch(event_type):
        return "[not a type name]"
    return _DIGIT_RUN.sub("#", event_type)


@dataclass(frozen=True)
class DeadLetter:
    """Why one record could not be processed."""

    record: ConsumerRecord[bytes, bytes]
    reason: str  # undecodable, schema_invalid, unknown_type, ..., handler_failed
    error_class: str
    message: str
    attempts: int
    event_type: str = ""
    event_id: str = ""


def dead_letter_headers(
    letter: DeadLetter, consumer_group: str, service_version: str
) -> list[tuple[str, bytes]]:
    """Returns the provenance headers of a dead letter."""
    record = letter.record
    values = {
        "dlt-original-topic": record.topic,
        "dlt-original-partition": str(record.partition),
        "dlt-original-offset": str(record.offset),
        "dlt-original-timestamp": str(record.timestamp),
        "dlt-original-consumer-group": consumer_group,
        "dlt-reason": letter.reason,
        "dlt-exception-fqcn": letter.error_class,
        "dlt-exception-message": mask_text(letter.message)[:MAX_MESSAGE_CHARS],
        "dlt-attempts": str(letter.attempts),
        "dlt-event-type": safe_event_type(letter.event_type),
        "dlt-event-id": mask_text(letter.event_id)[:200],
        "dlt-service-version": service_version,
    }
    return [(name, value.encode()) for name, value in values.items()]


class DeadLetterPublisher:
    """Sends dead letters to one service's dead-letter topic and waits for the ack."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        consumer_group: str,
        service_version: str = "0.1.0",
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._group = consumer_group
        self._version = service_version

    async def publish(self, letters: list[DeadLetter]) -> None:
        """Sends `letters`, keeping the original key and value, and returns after every ack."""
        deliveries = [
            await self._producer.send(
                self._topic,
                letter.record.value,
                key=letter.record.key,
                headers=dead_letter_headers(letter, self._group, self._version),
            )
            for letter in letters
        ]
        for delivery in deliveries:
            await delivery
