"""Entry point: `python -m cascade.cases` serves the cases API."""

from cascade.cases.main import main

main()
