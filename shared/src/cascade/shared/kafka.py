"""Kafka client helpers at the framework edge (business code never imports this)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from cascade.shared.settings import KafkaSettings


class BrokerProbe:
    """Answers "is the broker reachable?" for readiness, reusing one admin connection."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._admin: AIOKafkaAdminClient | None = None

    async def ping(self) -> None:
        """Raises unless the broker answers a metadata request."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._settings.bootstrap_servers,
                request_timeout_ms=self._settings.request_timeout_ms,
            )
            await admin.start()
            self._admin = admin
        await self._admin.list_topics()

    async def close(self) -> None:
        """Closes the admin connection, if one was opened."""
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
