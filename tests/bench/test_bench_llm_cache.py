"""The cache benchmark's verdict: each server at its best median, ratios to the baseline."""

from __future__ import annotations

from typing import Any

from bench.bench_llm_cache import SERVERS, summarize
from bench.bench_web import Phase


def _phase(server: str, kind: str, connections: int, rate: float, latency: float) -> Phase:
    completed = int(rate)
    result: dict[str, Any] = {
        "completed": completed,
        "elapsed": 1.0,
        "errors": 0,
        "error_samples": [],
        "latencies": [latency] * completed,
        "send_lags": [0.0],
        "service": [latency],
        "sessions": completed,
        "client_cpu": 0.1,
        "watched_cpu": {"server": rate / 1000, "postgres": 0.1},
        "machine": {"busy": 60, "idle": 40, "steal": 0},
    }
    return Phase(server, kind, [result], connections if kind == "throughput" else 0)


def test_capacities_are_best_medians_and_latencies_medians_over_rounds() -> None:
    phases = []
    for name, scale in zip(SERVERS, (1.0, 0.25, 0.9, 10.0), strict=True):
        for at_32, at_128 in ((400, 420), (500, 480), (2000, 510)):  # a lucky round at 32
            phases.append(_phase(name, "throughput", 32, at_32 * scale, 0.01))
            phases.append(_phase(name, "throughput", 128, at_128 * scale, 0.01))
        phases += [_phase(name, "latency", 128, 200, s) for s in (0.002, 0.003, 0.050)]
    out = summarize(phases)
    assert out["exact"]["throughput"] == {"32": 500.0, "128": 480.0}
    assert out["exact"]["capacity"] == 500.0 and out["exact"]["capacity_connections"] == 32
    assert out["baseline"]["capacity"] == 5000.0
    assert out["exact"]["ratio"] == 0.1 and out["similar"]["ratio"] == 0.025
    assert out["exact"]["latency_p99_ms"] == 3.0  # the median round, not the slow one
    assert out["exact"]["cpu_us_per_request"] == 1000
