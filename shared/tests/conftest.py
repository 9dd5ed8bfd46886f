"""Fixtures of the shared kit's tests (infrastructure fixtures come from cascade.shared.testing)."""
