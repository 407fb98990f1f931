"""Yardstick: a ``multiprocessing`` spawn-context process that runs a trivial function.

Time from ``Process.start()`` to the function's result arriving over a pipe. Two variants per
repetition: *bare*, whose child imports nothing heavy (this module is small: the most favourable
case for the yardstick), and *loaded*, whose child imports numpy and pyarrow before answering,
as a worker must before it can run a UDF (tilefn's template has them preloaded). One warmup
spawn of each.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection

from bench._stats import Metrics, latency_metrics


def _answer(connection: Connection, loaded: bool) -> None:
    if loaded:
        import numpy
        import pyarrow

        del numpy, pyarrow
    connection.send(1)
    connection.close()


def spawn_once(loaded: bool) -> float:
    """Seconds from start() to the result."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_answer, args=(sender, loaded))
    started = time.perf_counter()
    process.start()
    if receiver.recv() != 1:
        raise RuntimeError("the spawned process sent the wrong value")
    seconds = time.perf_counter() - started
    process.join()
    sender.close()
    receiver.close()
    return seconds


def _rep(spawns: int) -> Metrics:
    found = latency_metrics([spawn_once(False) for _ in range(spawns)])
    loaded = latency_metrics([spawn_once(True) for _ in range(spawns)])
    found.update({"loaded_" + key: value for key, value in loaded.items()})
    return found


def measure(reps: int, spawns: int) -> list[Metrics]:
    spawn_once(False)
    spawn_once(True)
    return [_rep(spawns) for _ in range(reps)]
