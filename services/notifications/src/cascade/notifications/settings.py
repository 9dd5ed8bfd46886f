"""The notifications service's one settings object (env prefix `NOTIFICATIONS_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cascade.shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    service_name: str = "notifications"
    http_port: int = 8003
