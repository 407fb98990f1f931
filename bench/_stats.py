"""Percentiles of samples and the median/min/max of a metric across repetitions."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

#: One repetition's measurements, by metric name (milliseconds, calls/s, GB/s, MiB, ...).
Metrics = dict[str, float]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank: an observed sample, never an interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_metrics(seconds: list[float]) -> Metrics:
    """p50/p99 in milliseconds and the sample count of one repetition's call latencies."""
    return {
        "p50_ms": percentile(seconds, 0.5) * 1e3,
        "p99_ms": percentile(seconds, 0.99) * 1e3,
        "calls": float(len(seconds)),
    }


@dataclass(frozen=True)
class Spread:
    """One metric across repetitions."""

    median: float
    min: float
    max: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), tuple(values))
