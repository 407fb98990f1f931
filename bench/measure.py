"""Client-side entry point: one fresh process per measurement, run by ``bench/run.py``.

    python -m bench.measure WORKLOAD SYSTEM [--target HOST:PORT] [--server-pid PID] ...

Prints one JSON line, ``{"reps": [metrics, ...], "info": {...}}``. Client/server workloads run
one repetition per process (the orchestrator interleaves tilefn and its peer; tilefn's graph has
no server peer); Ray (its trivial task and its graph), the sandbox pool and multiprocessing spawn
run every repetition in one process. Imports stay inside the branches: spawned children
re-import this module, and each measurement loads only what it uses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench._stats import Metrics

#: (workload, system) pairs this entry point knows.
CHOICES = {
    "trivial_seq": ("tilefn", "echo"),
    "trivial_conc": ("tilefn", "echo"),
    "stream": ("tilefn", "flight"),
    "array": ("tilefn", "local"),
    "graph": ("tilefn", "ray"),
    "ray": ("ray",),
    "sandbox": ("tilefn",),
    "spawn": ("multiprocessing",),
}


def _one_rep(options: argparse.Namespace) -> Metrics:
    """Client/server workloads: one repetition against ``--target``."""
    workload, system, target = options.workload, options.system, options.target
    if workload in ("trivial_seq", "trivial_conc"):
        from bench.workloads import trivial

        kind = "sequential" if workload == "trivial_seq" else "concurrent"
        result: Metrics = getattr(trivial, f"{system}_{kind}")(target, options.seconds)
        return result
    if workload == "graph":
        from bench.workloads import graph

        return graph.tilefn(target, options.server_pid)
    if workload == "stream":
        from bench.workloads import stream

        return (
            stream.tilefn(target, options.server_pid)
            if system == "tilefn"
            else (stream.flight(target, options.server_pid))
        )
    from bench.workloads import arrays

    run = arrays.tilefn if system == "tilefn" else arrays.local
    return run(target, Path(options.data_root))


def run(options: argparse.Namespace) -> tuple[list[Metrics], dict[str, Any]]:
    if options.workload == "ray":
        from bench.peers import ray_tasks

        return ray_tasks.measure(options.reps, options.seconds), {}
    if options.workload == "graph" and options.system == "ray":
        from bench.peers import ray_graph

        return ray_graph.measure(options.reps), {}
    if options.workload == "sandbox":
        from bench.workloads import sandbox

        return sandbox.measure(options.reps)
    if options.workload == "spawn":
        from bench.peers import spawn

        return spawn.measure(options.reps, options.count), {}
    return [_one_rep(options)], {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(CHOICES))
    parser.add_argument("system")
    parser.add_argument("--target", default="")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--data-root", default="")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--count", type=int, default=10)
    options = parser.parse_args()
    if options.system not in CHOICES[options.workload]:
        parser.error(f"{options.workload} runs on {', '.join(CHOICES[options.workload])}")
    reps, info = run(options)
    print(json.dumps({"reps": reps, "info": info}), flush=True)


if __name__ == "__main__":
    main()
