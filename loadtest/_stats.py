"""Numbers from samples: latency percentiles, counts by status code, per-second timeline.

Percentiles are exact (nearest rank over the sorted latencies): a run holds at most a few
hundred thousand samples, so there is no need for an HDR histogram's approximation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ._config import WORKLOADS
from ._runner import PhaseResult, Sample

#: Percentiles reported, as (key, fraction).
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99_9", 0.999))
#: A client this late (p99 of arrival lag, ms) or this busy (% of one core) skews latencies.
CLIENT_LAG_LIMIT_MS = 10.0
CLIENT_CPU_LIMIT = 90.0


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values; nan when there are none."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of durations in seconds, in milliseconds (nan if none)."""
    ordered = sorted(s * 1000 for s in seconds)
    summary = {key: percentile(ordered, fraction) for key, fraction in PERCENTILES}
    summary["max"] = ordered[-1] if ordered else math.nan
    summary["mean"] = sum(ordered) / len(ordered) if ordered else math.nan
    return {key: round(value, 3) for key, value in summary.items()}


def counts(samples: Sequence[Sample]) -> dict[str, Any]:
    """sent / completed / errors, errors by code and by code + reason, unexpected outcomes."""
    errors = [s for s in samples if s.code != "OK"]
    by_reason = Counter(s.reason or f"{s.code} (no reason)" for s in errors)
    return {
        "sent": len(samples),
        "completed": len(samples) - len(errors),
        "errors": len(errors),
        "errors_by_code": dict(Counter(s.code for s in errors).most_common()),
        "errors_by_reason": dict(by_reason.most_common()),
        "unexpected": sum(not s.expected for s in samples),
    }


def summarize(result: PhaseResult, *, timeline: bool = True) -> dict[str, Any]:
    """The report of one phase (see docs/PERFORMANCE.md, "Reading the report")."""
    config, samples = result.config, result.samples
    in_window = [s for s in samples if s.finished <= config.duration]
    summary: dict[str, Any] = {
        "offered_rate": config.rate,
        "duration_s": config.duration,
        **counts(samples),
        "achieved_rate": round(len(in_window) / config.duration, 1),
        "goodput": round(sum(s.expected for s in in_window) / config.duration, 1),
        "received_mib": round(sum(s.ipc_bytes for s in samples) / (1 << 20), 2),
        "latency_ms": latency_ms(s.latency for s in samples),
        "workloads": _by_workload(samples),
        "client": client_health(result),
    }
    if timeline:
        summary["timeline"] = per_second(samples, config.duration)
    return summary


def _by_workload(samples: Sequence[Sample]) -> dict[str, Any]:
    names = dict.fromkeys(s.workload for s in samples)
    found: dict[str, Any] = {}
    for name in sorted(names, key=_workload_order):
        mine = [s for s in samples if s.workload == name]
        found[name] = {**counts(mine), "latency_ms": latency_ms(s.latency for s in mine)}
    return found


def _workload_order(name: str) -> int:
    return WORKLOADS.index(name) if name in WORKLOADS else len(WORKLOADS)


def client_health(result: PhaseResult) -> dict[str, Any]:
    """Whether the load generator kept its schedule: lag, slot waits, CPU, in flight."""
    samples = result.samples
    lag = latency_ms(s.arrived - s.intended for s in samples)
    waits = latency_ms(s.started - s.arrived for s in samples if s.started is not None)
    cpu = 100 * result.cpu_seconds / result.wall_seconds if result.wall_seconds > 0 else 0.0
    busy = lag["p99"] > CLIENT_LAG_LIMIT_MS or cpu > CLIENT_CPU_LIMIT
    return {
        "lag_ms": {key: lag[key] for key in ("p50", "p99", "max")},
        "queue_wait_ms": {key: waits[key] for key in ("p50", "p99", "max")},
        "expired_in_queue": sum(s.started is None for s in samples),
        "max_in_flight": result.max_in_flight,
        "concurrency_cap": result.config.concurrency,
        "cpu_percent": round(cpu, 1),
        "saturated": busy,
    }


def per_second(samples: Sequence[Sample], duration: float) -> list[dict[str, Any]]:
    """One row per second of intended send time: sent, errors, latency percentiles."""
    buckets: list[list[Sample]] = [[] for _ in range(max(1, math.ceil(duration)))]
    for sample in samples:
        buckets[min(int(sample.intended), len(buckets) - 1)].append(sample)
    rows = []
    for second, bucket in enumerate(buckets):
        latency = latency_ms(s.latency for s in bucket)
        rows.append(
            {
                "t": second,
                "sent": len(bucket),
                "errors": sum(s.code != "OK" for s in bucket),
                "unexpected": sum(not s.expected for s in bucket),
                **{key: latency[key] for key in ("p50", "p99", "max")},
            }
        )
    return rows
