"""Benchmarks that print the figures quoted in the README and docs (never asserted in tests)."""
