"""Test tooling: the pytest plugin that starts real Kafka and PostgreSQL, and its helpers."""
