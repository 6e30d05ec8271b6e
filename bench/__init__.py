"""Benchmarks of the gateway; run ``python -m bench.bench_web`` (see bench/README.md)."""
