"""Adapters of the cases service: persistence and messaging at the framework edge."""
