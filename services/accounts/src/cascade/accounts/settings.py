"""The accounts service's one settings object (env prefix `ACCOUNTS_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cascade.shared.settings import ServiceSettings


class AccountsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_")

    service_name: str = "accounts"
    http_port: int = 8001
