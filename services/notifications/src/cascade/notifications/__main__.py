"""Entry point: `python -m cascade.notifications` serves the notifications API."""

from cascade.notifications.main import main

main()
