"""The first-delta benchmark's summary: percentiles per path, and the gateway's own part."""

from __future__ import annotations

from bench.bench_first_delta import summary


def test_each_path_gets_its_percentiles_and_the_gateway_its_part_over_the_relay() -> None:
    ms = 0.001
    result = summary(
        {
            "web": [i * ms for i in range(1, 101)],  # 1..100 ms
            "relay": [i * ms / 2 for i in range(1, 101)],
            "telegram": [4 * ms] * 10,
            "telegram_relay": [],
        }
    )
    assert (result["web"]["p50_ms"], result["web"]["p99_ms"]) == (50.0, 99.0)
    assert (result["relay"]["p50_ms"], result["relay"]["p99_ms"]) == (25.0, 49.5)
    assert result["web_minus_baseline"] == {"p50_ms": 25.0, "p99_ms": 49.5}
    assert result["telegram"]["runs"] == 10 and result["telegram"]["p99_ms"] == 4.0
    # A path with no runs has no row, and no difference is made up for it.
    assert "telegram_relay" not in result and "telegram_minus_baseline" not in result
