"""The cases service's one settings object (env prefix `CASES_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cascade.shared.settings import ServiceSettings


class CasesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CASES_")

    service_name: str = "cases"
    http_port: int = 8002
