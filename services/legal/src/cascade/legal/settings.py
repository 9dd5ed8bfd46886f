"""The legal service's one settings object (env prefix `LEGAL_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cascade.shared.settings import ServiceSettings


class LegalSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEGAL_")

    service_name: str = "legal"
    http_port: int = 8004
