"""Alembic environment of the cases database."""

from cascade.cases.adapters.orm import metadata
from cascade.cases.settings import CasesSettings
from cascade.shared.migrations import run_env

run_env(metadata, fallback_url=lambda: CasesSettings().database.url.get_secret_value())
