"""gdln benchmarks: ``python -m benchmarks`` prints every ratio (see docs/benchmarks.md)."""
