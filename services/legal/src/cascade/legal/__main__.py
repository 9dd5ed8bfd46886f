"""Entry point: `python -m cascade.legal` serves the legal API."""

from cascade.legal.main import main

main()
