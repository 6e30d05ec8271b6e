"""The benchmark's verdict: capacities are each server's best median, and their ratio."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.bench_web import Phase, _counts, _medians


def _phase(server: str, kind: str, connections: int, rate: float) -> Phase:
    completed = int(rate)
    result: dict[str, Any] = {
        "completed": completed,
        "elapsed": 1.0,
        "errors": 0,
        "error_samples": [],
        "latencies": [0.001] * completed,
        "send_lags": [0.0],
        "service": [0.001],
        "sessions": 0,
        "client_cpu": 0.1,
        "watched_cpu": {"server": 0.5, "postgres": 0.2},
        "machine": {"busy": 60, "idle": 40, "steal": 0},
    }
    return Phase(server, kind, [result], connections if kind == "throughput" else 0)


def _run(rates: dict[tuple[str, int], list[float]]) -> dict[str, Any]:
    phases = [
        _phase(server, "throughput", n, rate)
        for (server, n), rounds in rates.items()
        for rate in rounds
    ]
    phases += [_phase(s, "latency", 256, 1000) for s in ("gateway", "baseline")]
    return _medians(phases)


def test_each_server_is_rated_at_its_best_median_and_every_count_is_reported() -> None:
    result = _run(
        {
            ("gateway", 32): [600, 650, 620],
            ("gateway", 128): [800, 790, 1500],  # one lucky round does not make the median
            ("baseline", 32): [2000, 2100, 1900],
            ("baseline", 128): [1800, 1700, 1750],
        }
    )
    assert result["capacity"]["gateway"] == {"turns_per_s": 800.0, "connections": 128}
    assert result["capacity"]["baseline"] == {"turns_per_s": 2000.0, "connections": 32}
    assert result["ratio"] == result["capacity"]["ratio"] == 0.4
    by_count = {e["connections"]: e for e in result["throughput"]}
    assert sorted(by_count) == [32, 128]
    assert by_count[32]["ratio"] == 0.31  # 620 / 2000
    assert by_count[128]["ratio"] == round(800 / 1750, 3)


def test_connection_counts_parse_sorted_and_unique() -> None:
    assert _counts("128,32, 64,32") == [32, 64, 128]
    for bad in ("", "0,32", "a,32"):
        with pytest.raises(argparse.ArgumentTypeError):
            _counts(bad)
