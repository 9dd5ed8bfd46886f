"""Alembic environment of the accounts database."""

from cascade.accounts.adapters.orm import metadata
from cascade.accounts.settings import AccountsSettings
from cascade.shared.migrations import run_env

run_env(metadata, fallback_url=lambda: AccountsSettings().database.url.get_secret_value())
