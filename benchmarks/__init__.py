"""Benchmarks that write the repository's docs, outside the runtime package."""
