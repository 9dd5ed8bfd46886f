"""Adapters of the notifications service: persistence and messaging at the framework edge."""
