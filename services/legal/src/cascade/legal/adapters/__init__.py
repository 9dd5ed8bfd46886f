"""Adapters of the legal service: persistence and messaging at the framework edge."""
