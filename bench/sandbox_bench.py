"""Sandbox benchmark: the worker pool alone, in process, no gRPC.

    python bench/sandbox_bench.py [--seconds 5] [--sandbox degraded|strict] [--json out.json]

Rows: critical-path dispatch of a trivial task to a ready one-shot worker (p50/p99), the same
with per-namespace reuse, sandbox setup per worker (fork -> READY, every layer), and sustained
one-shot executions per second with two callers. Prints a table and, with --json, writes it.
The suite (``python -m bench``) imports ``one_shot``/``reuse`` for its sandbox rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

import cloudpickle

from tilefn.sandbox import PoolConfig, TaskSpec, WorkerPool

PAUSE = float(os.environ.get("BENCH_PAUSE", "0.1"))
TASK = TaskSpec(udf_kind="pickled", udf=cloudpickle.dumps(lambda: 1))
REUSE_TASKS = 1000


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


async def open_pool(sandbox: str, max_tasks_per_worker: int) -> WorkerPool:
    """A started pool with two ready workers (the server's default)."""
    config = PoolConfig(ready_workers=2, max_tasks_per_worker=max_tasks_per_worker, sandbox=sandbox)
    pool = WorkerPool(config)
    pool.start()
    await pool.open()
    await asyncio.sleep(0.5)
    return pool


async def one_shot(sandbox: str, count: int, pause: float) -> dict[str, Any]:
    """A fresh one-shot pool: dispatch p50/p99 (ms) to a ready worker, worker setup p50 (ms)
    over every worker it started, and the active sandbox layers."""
    pool = await open_pool(sandbox, 1)
    try:
        times = await dispatch(pool, count, pause)
        setup = list(pool.stats().setup_seconds)
        return {
            "dispatch_one-shot_p50_ms": statistics.median(times) * 1e3,
            "dispatch_one-shot_p99_ms": percentile(times, 0.99) * 1e3,
            "worker_setup_p50_ms": statistics.median(setup) * 1e3,
            "workers_started": len(setup),
            "layers": sorted(k for k, v in pool.layers.items() if v),
        }
    finally:
        await pool.close()


async def reuse(sandbox: str, count: int) -> dict[str, float]:
    """A fresh pool reusing workers per namespace: dispatch p50/p99 (ms)."""
    pool = await open_pool(sandbox, REUSE_TASKS)
    try:
        times = await dispatch(pool, count, 0)
        return {
            "dispatch_reuse_p50_ms": statistics.median(times) * 1e3,
            "dispatch_reuse_p99_ms": percentile(times, 0.99) * 1e3,
        }
    finally:
        await pool.close()


async def main(seconds: float, sandbox: str = "degraded") -> dict[str, Any]:
    results: dict[str, Any] = await one_shot(sandbox, 200, PAUSE)
    pool = await open_pool(sandbox, 1)
    try:
        results["one_shot_per_second_2_callers"] = await sustained(pool, seconds, 2)
    finally:
        await pool.close()
    results.update(await reuse(sandbox, 200))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sandbox", default="degraded", choices=("degraded", "strict"))
    parser.add_argument("--json", help="also write the results here")
    options = parser.parse_args()
    found = asyncio.run(main(options.seconds, options.sandbox))
    for key, value in found.items():
        shown = f"{value:10.2f}" if isinstance(value, float) else str(value)
        print(f"{key:34s} {shown}")
    if options.json:
        with open(options.json, "w") as sink:
            json.dump(found, sink, indent=2)
    sys.exit(0)
