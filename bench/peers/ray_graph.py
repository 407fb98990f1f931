"""Yardstick: the graph of ``bench.workloads.graph`` in Ray tasks (``ray.init(num_cpus=2)``).

N ``leaf.remote(i)`` tasks, then one ``total.remote(*refs)`` task: Ray resolves the leaves'
ObjectRefs before ``total`` runs, so, as in tilefn, no leaf's result goes through the driver.
The time runs from the first submit to ``ray.get`` of the sum, which is checked. Ray starts
once in this process (not measured) and warms up with one unmeasured graph of each size; each
repetition then times one graph of each size, with the CPU of the driver and every Ray process
it started (GCS, raylet, workers).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench._cpu import tree_cpu_seconds
from bench._stats import Metrics
from bench.workloads.graph import LEAVES, expected, metric


def run_graph(ray: Any, leaf: Any, total: Any, leaves: int) -> float:
    """Seconds from the first submit to the checked sum."""
    started = time.perf_counter()
    references = [leaf.remote(i) for i in range(leaves)]
    value = ray.get(total.remote(*references))
    seconds = time.perf_counter() - started
    if value != expected(leaves):
        raise RuntimeError(f"sum {value} != {expected(leaves)}")
    return seconds


def measure(reps: int) -> list[Metrics]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here: never phone home
    import ray

    def leaf(i: int) -> int:  # nested, so Ray pickles them by value for its workers
        return i

    def total(*values: int) -> int:
        return sum(values)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tasks = ray.remote(leaf), ray.remote(total)
        for leaves in LEAVES:
            run_graph(ray, *tasks, leaves)
        results = []
        for _ in range(reps):
            found: Metrics = {}
            for leaves in LEAVES:
                before = tree_cpu_seconds(os.getpid())
                found[metric(leaves)] = run_graph(ray, *tasks, leaves)
                found[metric(leaves, "cpu_s")] = tree_cpu_seconds(os.getpid()) - before
            results.append(found)
        return results
    finally:
        ray.shutdown()
