"""Alembic environment of the legal database."""

from cascade.legal.adapters.orm import metadata
from cascade.legal.settings import LegalSettings
from cascade.shared.migrations import run_env

run_env(metadata, fallback_url=lambda: LegalSettings().database.url.get_secret_value())
