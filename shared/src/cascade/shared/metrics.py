"""Prometheus metrics of the HTTP edge; each app has its own registry."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram


class HttpMetrics:
    """Counts requests and times them by method, route template and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cascade_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "cascade_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, started: float) -> None:
        """Records one request that started at `started` (perf_counter seconds)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(time.perf_counter() - started)
