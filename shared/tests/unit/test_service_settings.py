"""Matrix R20's boot-time guard: settings that would lose or double events are refused.

The consumer and producer clients are checked again when they start (test_consumer_config);
these checks refuse the settings object itself, before anything connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import ValidationError

from cascade.shared.settings import AuthSettings, BrokerKind, KafkaSettings, ServiceSettings

pytestmark = pytest.mark.unit

AUTH = AuthSettings(public_key_path=Path("/nonexistent/key.pem"))


def _settings(
    broker: BrokerKind = BrokerKind.APACHE,
    kafka: KafkaSettings | None = None,
    environment: Literal["local", "test", "production"] = "local",
) -> ServiceSettings:
    return ServiceSettings(
        auth=AUTH,
        service_name="accounts",
        broker=broker,
        kafka=kafka or KafkaSettings(),
        environment=environment,
    )


@pytest.mark.parametrize("broker", [BrokerKind.APACHE, BrokerKind.EXTERNAL])
def test_a_producer_without_idempotence_is_refused_on_a_real_broker(broker: BrokerKind) -> None:
    with pytest.raises(ValidationError, match="enable_idempotence may be off only on the embedded"):
        _settings(broker=broker, kafka=KafkaSettings(enable_idempotence=False))


def test_idempotence_may_be_off_on_the_embedded_broker_only() -> None:
    settings = _settings(broker=BrokerKind.EMBEDDED, kafka=KafkaSettings(enable_idempotence=False))

    assert settings.kafka.enable_idempotence is False


def test_production_refuses_topics_with_fewer_than_three_replicas() -> None:
    with pytest.raises(ValidationError, match="replication_factor must be at least 3"):
        _settings(environment="production", kafka=KafkaSettings(topic_replication_factor=1))

    replicated = KafkaSettings(topic_replication_factor=3)
    assert _settings(environment="production", kafka=replicated).environment == "production"
