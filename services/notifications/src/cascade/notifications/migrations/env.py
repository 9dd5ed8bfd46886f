"""Alembic environment of the notifications database."""

from cascade.notifications.adapters.orm import metadata
from cascade.notifications.settings import NotificationsSettings
from cascade.shared.migrations import run_env

run_env(metadata, fallback_url=lambda: NotificationsSettings().database.url.get_secret_value())
