"""Sandbox benchmark: the worker pool alone, in process, no gRPC.

    python bench/sandbox_bench.py [--seconds 5] [--json out.json]

Rows: critical-path dispatch of a trivial task to a ready one-shot worker (p50/p99), the same
with per-namespace reuse, sandbox setup per worker (fork -> READY, every layer), and sustained
one-shot executions per second with two callers. Prints a table and, with --json, writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import cloudpickle

from tilefn.sandbox import PoolConfig, TaskSpec, WorkerPool

PAUSE = float(__import__("os").environ.get("BENCH_PAUSE", "0.1"))
TASK = TaskSpec(udf_kind="pickled", udf=cloudpickle.dumps(lambda: 1))


async def run_once(pool: WorkerPool, namespace: str = "bench") -> None:
    async with pool.lease(namespace) as worker:
        async for _ in worker.run(TASK):
            pass


async def dispatch(pool: WorkerPool, count: int, pause: float) -> list[float]:
    """Latency of lease + trivial task, with a pause so a ready worker is always waiting."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await run_once(pool)
        times.append(time.perf_counter() - started)
        await asyncio.sleep(pause)
    return times


async def sustained(pool: WorkerPool, seconds: float, callers: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await run_once(pool)
            done += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode, tasks in (("one-shot", 1), ("reuse", 1000)):
        config = PoolConfig(ready_workers=2, max_tasks_per_worker=tasks, sandbox="degraded")
        pool = WorkerPool(config)
        pool.start()
        await pool.open()
        await asyncio.sleep(0.5)
        times = await dispatch(pool, 200, PAUSE if tasks == 1 else 0)
        results[f"dispatch_{mode}_p50_ms"] = statistics.median(times) * 1e3
        results[f"dispatch_{mode}_p99_ms"] = percentile(times, 0.99) * 1e3
        if tasks == 1:
            results["one_shot_per_second_2_callers"] = await sustained(pool, seconds, 2)
            setup = list(pool.stats().setup_seconds)
            results["worker_setup_p50_ms"] = statistics.median(setup) * 1e3
            results["layers"] = sorted(k for k, v in pool.layers.items() if v)
        await pool.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", help="also write the results here")
    options = parser.parse_args()
    found = asyncio.run(main(options.seconds))
    for key, value in found.items():
        shown = f"{value:10.2f}" if isinstance(value, float) else str(value)
        print(f"{key:34s} {shown}")
    if options.json:
        with open(options.json, "w") as sink:
            json.dump(found, sink, indent=2)
    sys.exit(0)
