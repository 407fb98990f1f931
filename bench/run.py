"""The benchmark suite: tilefn and its yardsticks, side by side, in one run.

    python -m bench [--reps 5] [--seconds 1.5] [--json bench/last-run.json]

Process layout::

    run (this process: orchestrates, measures nothing itself)
     ├── tilefn server  (python -m tilefn.server --sandbox strict) ── its template and workers
     ├── echo server    (bench.peers.echo_server: grpc.aio unary echo)
     ├── flight server  (bench.peers.flight_server: Arrow Flight DoGet)
     └── one fresh client process per measurement (bench.measure), never a server's process

Client/server workloads alternate tilefn and its yardstick repetition by repetition (ABBA) so
drift in machine load hits both; then tilefn's task graphs run, one client process per
repetition. Ray (trivial tasks, then task graphs), the sandbox pool and multiprocessing spawn
run after the servers stop, each in one process of its own. Each row reports the median, min
and max across repetitions, the ratio of tilefn's median to the yardstick's, the target and
PASS/MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _servers
from bench._report import Row, Target, cpu_seconds, machine, table
from bench._stats import Metrics, Spread
from bench.workloads import arrays

REPO = _servers.REPO
MEASURE_TIMEOUT = 300.0
#: Workloads where tilefn and its yardstick take turns: (workload, yardstick).
PAIRED = (
    ("trivial_seq", "echo"),
    ("trivial_conc", "echo"),
    ("stream", "flight"),
    ("array", "local"),
)
#: Every repetition's metrics and extra facts, by workload then system.
Results = dict[str, dict[str, dict[str, Any]]]


def measure(workload: str, system: str, *options: str) -> tuple[list[Metrics], dict[str, Any]]:
    """Run ``python -m bench.measure`` in a fresh process; its last stdout line is the JSON."""
    command = [sys.executable, "-m", "bench.measure", workload, system, *options]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=MEASURE_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{done.stderr[-4000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found["reps"], found["info"]


def _record(
    results: Results, workload: str, system: str, reps: list[Metrics], info: dict[str, Any]
) -> None:
    entry = results.setdefault(workload, {}).setdefault(system, {"reps": [], "info": {}})
    entry["reps"] += reps
    entry["info"].update(info)


#: The tilefn server as an operator would start it (default pool settings), less --port.
TILEFN_SERVER = ["-m", "tilefn.server", "--host", "127.0.0.1", "--sandbox", "strict", "--data-root"]
#: Which server each system's client talks to (the local read needs none; it gets tilefn's).
SERVER_OF = {"tilefn": "tilefn", "echo": "echo", "flight": "flight", "local": "tilefn"}


def start_servers(tmp: Path) -> dict[str, _servers.Server]:
    store = tmp / "state.sqlite3"
    # Authentication stays on, as in production; clients (this process's children) inherit
    # the token through the environment.
    os.environ["TILEFN_TOKEN"] = _servers.issue_token(store)
    tilefn = [*TILEFN_SERVER, str(tmp / "data"), "--store", str(store)]
    started = {
        "tilefn": _servers.start("tilefn", tilefn, tmp),
        "echo": _servers.start("echo", ["-m", "bench.peers.echo_server"], tmp),
        "flight": _servers.start("flight", ["-m", "bench.peers.flight_server"], tmp),
    }
    _servers.wait_ready(started["echo"], _servers.printed_ready)
    _servers.wait_ready(started["flight"], _servers.printed_ready)
    _servers.wait_ready(started["tilefn"], _servers.tilefn_answers)
    return started


def run_paired(
    results: Results, servers: dict[str, _servers.Server], tmp: Path, reps: int, seconds: float
) -> None:
    for workload, peer in PAIRED:
        for rep in range(reps):
            order = ("tilefn", peer) if rep % 2 == 0 else (peer, "tilefn")
            for system in order:
                server = servers[SERVER_OF[system]]
                options = ["--target", server.target, "--server-pid", str(server.pid)]
                options += ["--data-root", str(tmp / "data"), "--seconds", str(seconds)]
                _record(results, workload, system, *measure(workload, system, *options))
            print(f"  {workload} repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)


def run_graphs(results: Results, server: _servers.Server, reps: int) -> None:
    """tilefn's task graphs (no server peer: their yardstick is Ray's, run alone)."""
    for rep in range(reps):
        options = ["--target", server.target, "--server-pid", str(server.pid)]
        _record(results, "graph", "tilefn", *measure("graph", "tilefn", *options))
        print(f"  graph repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)


#: Run after the servers stop, each (workload, system) in one process for all repetitions.
ALONE = (("ray", "ray"), ("graph", "ray"), ("sandbox", "tilefn"), ("spawn", "multiprocessing"))


def run_alone(results: Results, reps: int, seconds: float) -> None:
    for workload, system in ALONE:
        print(f"  {workload} ({system})", file=sys.stderr, flush=True)
        options = ["--reps", str(reps), "--seconds", str(seconds), "--count", "10"]
        _record(results, workload, system, *measure(workload, system, *options))


#: One row: workload label, metric label, tilefn's (workload, metric), the yardstick's
#: (label, workload, system, metric), and the target for tilefn's median.
RowSpec = tuple[str, str, tuple[str, str], tuple[str, str, str, str], Target | None]
SEQ, CONC = "trivial, sequential", "trivial, 32 callers"
STREAM, RSS = "1 GiB float64 stream", "RSS growth MiB"
ECHO, RAY = "grpc.aio echo", "ray task"
SPAWN, LOADED = "mp spawn, bare", "mp spawn +numpy,pyarrow"
GRAPH100, GRAPH1000 = "graph, 100 leaves + fan-in", "graph, 1,000 leaves + fan-in"
RAY_GRAPH = "ray tasks"
ROWS: tuple[RowSpec, ...] = (
    (SEQ, "p50 ms", ("trivial_seq", "p50_ms"), (ECHO, "trivial_seq", "echo", "p50_ms"),
     Target("<=", 1.5)),
    (SEQ, "p99 ms", ("trivial_seq", "p99_ms"), (ECHO, "trivial_seq", "echo", "p99_ms"), None),
    (CONC, "calls/s", ("trivial_conc", "calls_per_s"),
     (ECHO, "trivial_conc", "echo", "calls_per_s"), Target(">=", 0.6)),
    (SEQ, "p50 ms", ("trivial_seq", "p50_ms"), (RAY, "ray", "ray", "seq_p50_ms"),
     Target("<=", 0.3)),
    (SEQ, "p99 ms", ("trivial_seq", "p99_ms"), (RAY, "ray", "ray", "seq_p99_ms"), None),
    (CONC, "calls/s", ("trivial_conc", "calls_per_s"),
     (RAY, "ray", "ray", "conc_calls_per_s"), Target(">=", 1.5)),
    (STREAM, "GB/s", ("stream", "gb_per_s"), ("flight DoGet", "stream", "flight", "gb_per_s"),
     Target(">=", 0.9)),
    (STREAM, "server " + RSS, ("stream", "server_rss_growth_mib"),
     ("flight DoGet", "stream", "flight", "server_rss_growth_mib"),
     Target("<=", 256, False, "MiB")),
    (STREAM, "client " + RSS, ("stream", "client_rss_growth_mib"),
     ("flight DoGet", "stream", "flight", "client_rss_growth_mib"), None),
    ("sum of a 512 MiB dense array", "seconds", ("array", "seconds"),
     ("tiledb-py + numpy", "array", "local", "seconds"), Target("<=", 1.25)),
    ("dispatch to a ready worker", "p50 ms", ("sandbox", "dispatch_one-shot_p50_ms"),
     (LOADED, "spawn", "multiprocessing", "loaded_p50_ms"), Target("<=", 3, False, "ms")),
    ("dispatch to a reused worker", "p50 ms", ("sandbox", "dispatch_reuse_p50_ms"),
     (LOADED, "spawn", "multiprocessing", "loaded_p50_ms"), None),
    ("create a worker, every layer", "p50 ms", ("sandbox", "worker_setup_p50_ms"),
     (LOADED, "spawn", "multiprocessing", "loaded_p50_ms"), Target("<=", 25, False, "ms")),
    ("create a worker, every layer", "p50 ms", ("sandbox", "worker_setup_p50_ms"),
     (SPAWN, "spawn", "multiprocessing", "p50_ms"), None),
    (GRAPH100, "seconds", ("graph", "leaves_100_s"),
     (RAY_GRAPH, "graph", "ray", "leaves_100_s"), Target("<=", 1.0)),
    (GRAPH1000, "seconds", ("graph", "leaves_1000_s"),
     (RAY_GRAPH, "graph", "ray", "leaves_1000_s"), Target("<=", 1.0)),
    (GRAPH1000, "CPU seconds", ("graph", "leaves_1000_cpu_s"),
     (RAY_GRAPH, "graph", "ray", "leaves_1000_cpu_s"), None),
)  # fmt: skip


def _spread(results: Results, workload: str, system: str, key: str) -> Spread:
    return Spread.of([rep[key] for rep in results[workload][system]["reps"]])


def rows(results: Results) -> list[Row]:
    """The table, in the issue's order."""
    return [
        Row(
            label,
            metric,
            _spread(results, mine[0], "tilefn", mine[1]),
            peer[0],
            _spread(results, *peer[1:]),
            target,
        )
        for label, metric, mine, peer, target in ROWS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per workload")
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.5,
        help="measuring time of each latency/throughput repetition",
    )
    parser.add_argument("--json", type=Path, help="also write every number here")
    options = parser.parse_args()
    started = time.perf_counter()
    facts = machine()
    cpu_before = cpu_seconds()
    _warn_if_busy()
    results: Results = {}
    tmp = Path(tempfile.mkdtemp(prefix="tilefn-bench-"))
    servers: dict[str, _servers.Server] = {}
    try:
        print("creating the 512 MiB array", file=sys.stderr, flush=True)
        arrays.create(tmp / "data")
        servers = start_servers(tmp)
        facts["servers"] = {name: server.command for name, server in servers.items()}
        run_paired(results, servers, tmp, options.reps, options.seconds)
        run_graphs(results, servers["tilefn"], options.reps)
        for server in servers.values():
            server.stop()
        run_alone(results, options.reps, options.seconds)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds()
    facts["other_load_cpus"] = (
        max(0.0, (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])) / elapsed
    )
    report(results, facts, options, elapsed)


def _warn_if_busy() -> None:
    """Other work on the machine skews every row: say so before spending minutes."""
    before = cpu_seconds()[0]
    time.sleep(1.0)
    busy = cpu_seconds()[0] - before
    if busy >= 0.2:
        print(
            f"warning: {busy:.2f} CPUs busy before the run; numbers will be noisy",
            file=sys.stderr,
            flush=True,
        )


def report(
    results: Results, facts: dict[str, Any], options: argparse.Namespace, seconds: float
) -> None:
    found = rows(results)
    facts["loadavg_at_end"] = os.getloadavg()
    print(table(found))
    print(
        f"\nother load on the machine during the run: {facts['other_load_cpus']:.2f} of "
        f"{facts['cpu_count']} CPUs busy on average (0 for a quiet machine; noisy if >= 0.2)"
    )
    print(
        f"{facts['cpu_count']} CPUs ({facts['cpu_model']}), Python {facts['python']}, "
        f"{options.reps} repetitions, total {seconds:.0f} s"
    )
    if options.json:
        document = {
            "machine": facts,
            "reps": options.reps,
            "seconds": options.seconds,
            "total_seconds": seconds,
            "rows": [r.as_json() for r in found],
            "results": results,
        }
        options.json.write_text(json.dumps(document, indent=2) + "\n")
