"""Adapters of the accounts service: persistence and messaging at the framework edge."""
