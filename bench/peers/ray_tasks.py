"""Yardstick: a Ray local task returning 1 (``ray.init(num_cpus=2)``), in this process.

Per repetition, the same two measurements as tilefn's trivial rows, with the same code
(``bench.workloads.trivial``): sequential ``ray.get(f.remote())`` latency, and calls/s of 32
coroutines on one asyncio loop each awaiting ``f.remote()``. Ray starts once per run (its
start-up is not measured); each measurement warms up first. For reference only (no row), also
calls/s with 32 tasks kept in flight by ``ray.wait``, Ray's own idiom, which needs no event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench._stats import Metrics
from bench.workloads.trivial import CALLERS, concurrent, sequential


def _windowed(ray: Any, task: Any, seconds: float) -> float:
    """Calls/s with CALLERS tasks in flight, resubmitting as each finishes."""
    pending = [task.remote() for _ in range(CALLERS)]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        finished, pending = ray.wait(pending, num_returns=1)
        done += len(finished)
        pending.append(task.remote())
    ray.get(pending)
    return done / seconds


def measure(reps: int, seconds: float) -> list[Metrics]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here: never phone home
    import ray

    def one() -> int:  # nested, so Ray pickles it by value for its workers
        return 1

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(one)
        if ray.get(task.remote()) != 1:
            raise RuntimeError("ray returned the wrong value")
        results = []
        for _ in range(reps):
            found = {
                "seq_" + k: v
                for k, v in sequential(lambda: ray.get(task.remote()), seconds).items()
            }
            rate = asyncio.run(concurrent(task.remote, seconds))
            found.update({"conc_" + k: v for k, v in rate.items()})
            found["window_calls_per_s"] = _windowed(ray, task, seconds)
            results.append(found)
        return results
    finally:
        ray.shutdown()
