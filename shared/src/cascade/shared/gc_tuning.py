"""How a Cascade process sets up Python's garbage collector for event throughput."""

from __future__ import annotations

import gc

# Python collects its youngest generation every 700 net new container objects. A service
# moving thousands of events a second holds a fetched batch (records, envelopes, rows) for
# a few milliseconds at a time and crossed that line hundreds of times a second: about
# 7% of the bus's CPU went to collections that found nothing to free (`make bench-bus`).
# Reference counting frees almost everything here; the cycle collector only has to run
# now and then.
YOUNG_GENERATION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Moves what start-up allocated out of the collector's sight and collects the young
    generation less often. Call once, after start-up and before serving."""
    gc.collect()
    gc.freeze()  # modules, models and the app: alive for the life of the process
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
