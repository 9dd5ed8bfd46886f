"""Benchmarks of the accounts service (`make bench-aging`)."""
