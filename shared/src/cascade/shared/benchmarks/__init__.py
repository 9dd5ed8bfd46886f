"""Benchmarks: `make bench-...` commands that print their figures."""
