"""Sandboxed workers without gRPC: dispatch to a ready one, and creating one with every layer.

Reuses ``bench/sandbox_bench.py`` in strict mode (the run fails unless every sandbox layer is
active). Per repetition: a fresh one-shot pool takes ``DISPATCHES`` trivial tasks, pausing so a
ready worker is always waiting (dispatch p50/p99 and the setup p50 of every worker it forked:
fork -> READY with every layer), then a fresh reusing pool takes ``REUSE_DISPATCHES`` back to back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench._stats import Metrics

DISPATCHES = 40
PAUSE = 0.05
REUSE_DISPATCHES = 100


def measure(reps: int) -> tuple[list[Metrics], dict[str, Any]]:
    from bench.sandbox_bench import one_shot, reuse

    async def rep() -> tuple[Metrics, list[str]]:
        found = await one_shot("strict", DISPATCHES, PAUSE)
        layers = found.pop("layers")
        found.update(await reuse("strict", REUSE_DISPATCHES))
        return {k: float(v) for k, v in found.items()}, layers

    results: list[Metrics] = []
    layers: list[str] = []
    for _ in range(reps):
        metrics, layers = asyncio.run(rep())
        results.append(metrics)
    return results, {"sandbox": "strict", "layers": layers}
