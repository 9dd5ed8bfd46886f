"""Entry point: `python -m cascade.accounts` serves the accounts API."""

from cascade.accounts.main import main

main()
