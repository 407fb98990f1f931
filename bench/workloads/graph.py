"""A task graph: N trivial leaves, then one fan-in node summing their outputs, on the server.

    leaf0 ─┐
    leaf1 ─┼──▶ total = sum([leaf0, leaf1, ...])
     ...  ─┘

tilefn: one ``GraphService.SubmitGraph`` of N leaf nodes (the Python source
``def leaf(i): return i``, each with its own JSON argument i) and a node ``total`` whose one
argument is the list of references to every leaf (``Argument.list`` of ``Argument.node``);
``WatchGraphBatches`` until the graph's final event, ``GetGraph`` for the fan-in node's task, then
``UdfService.FetchResult`` of that node only: no leaf's result leaves the server. The time
runs from building the request to having the value, which is checked against N(N-1)/2. Raw
``tilefn.v1`` stubs with the token of ``TILEFN_TOKEN``, as the client would send it.

Each client process warms up with one unmeasured graph of each size, then times one of each;
it also reports the phases of each timed graph and the CPU it cost (the client process plus the
server's whole process tree: server, template, workers). The yardstick, the same shape in Ray
tasks, is ``bench.peers.ray_graph``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import grpc

from bench._cpu import tree_cpu_seconds
from bench._stats import Metrics
from tilefn import codec
from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import graph_service_pb2_grpc, udf_pb2, udf_service_pb2_grpc
from tilefn.v1 import udf_service_pb2 as pb

#: The graph sizes measured (the number of leaves).
LEAVES = (100, 1000)
LEAF = "def leaf(i):\n    return i\n"
TOTAL = "def total(values):\n    return sum(values)\n"
TOTAL_ID = "total"
#: Seconds any one call may take (a 1,000-leaf graph takes ~2 s on 2 cores).
TIMEOUT = 120.0


def metric(leaves: int, what: str = "s") -> str:
    """The metric name of a graph size: ``leaves_100_s``, ``leaves_1000_cpu_s``, ..."""
    return f"leaves_{leaves}_{what}"


def expected(leaves: int) -> int:
    return leaves * (leaves - 1) // 2


def _call(source: str, argument: udf_pb2.Argument) -> pb.ExecuteUdfRequest:
    udf = udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text=source))
    return pb.ExecuteUdfRequest(udf=udf, args=[argument])


def request(leaves: int) -> gpb.SubmitGraphRequest:
    """The ``SubmitGraphRequest``: ``leaves`` leaf nodes and the fan-in node."""
    ids = [f"leaf{i}" for i in range(leaves)]
    nodes = [
        gpb.GraphNodeSpec(id=ids[i], call=_call(LEAF, udf_pb2.Argument(json=str(i))))
        for i in range(leaves)
    ]
    references = udf_pb2.Argument(
        list=udf_pb2.ArgumentList(items=[udf_pb2.Argument(node=i) for i in ids])
    )
    nodes.append(gpb.GraphNodeSpec(id=TOTAL_ID, call=_call(TOTAL, references)))
    return gpb.SubmitGraphRequest(name=f"bench: {leaves} leaves + fan-in", nodes=nodes)


@dataclass(frozen=True)
class _Stubs:
    """The two services a graph needs and the call metadata carrying the token."""

    graphs: Any
    udf: Any
    metadata: tuple[tuple[str, str], ...]


def _final_status(stubs: _Stubs, graph_id: str) -> int:
    """Follow WatchGraphBatches (as the Python client does) to the graph's final event; its
    GraphStatus."""
    watch = gpb.WatchGraphRequest(graph_id=graph_id)
    batches = stubs.graphs.WatchGraphBatches(watch, timeout=TIMEOUT, metadata=stubs.metadata)
    for event in (event for batch in batches for event in batch.events):
        if event.graph_status != gpb.GRAPH_STATUS_UNSPECIFIED:
            batches.cancel()  # the stream ends here anyway; do not wait for its close
            return int(event.graph_status)
    raise RuntimeError(f"graph {graph_id}: the watch ended without a final event")


def _value(stubs: _Stubs, graph: gpb.Graph) -> Any:
    """The fan-in node's stored result (FetchResult of its task), decoded."""
    task_id = next(n.task_id for n in graph.nodes if n.id == TOTAL_ID)
    fetch = pb.FetchResultRequest(task_id=task_id)
    pieces = stubs.udf.FetchResult(fetch, timeout=TIMEOUT, metadata=stubs.metadata)
    return codec.from_ipc(b"".join(p.ipc for p in pieces if p.WhichOneof("kind") == "ipc"))


def run_graph(stubs: _Stubs, leaves: int) -> Metrics:
    """One graph of ``leaves`` leaves, timed from building the request to the checked value;
    the phases (build + SubmitGraph, WatchGraph, GetGraph + FetchResult) as well."""
    started = time.perf_counter()
    graph = stubs.graphs.SubmitGraph(request(leaves), timeout=TIMEOUT, metadata=stubs.metadata)
    submitted = time.perf_counter()
    status = _final_status(stubs, graph.graph_id)
    ended = time.perf_counter()
    get = gpb.GetGraphRequest(graph_id=graph.graph_id)
    graph = stubs.graphs.GetGraph(get, timeout=TIMEOUT, metadata=stubs.metadata)
    if status != gpb.GRAPH_STATUS_SUCCEEDED:
        raise RuntimeError(f"graph ended {gpb.GraphStatus.Name(status)}: {graph.error_message}")
    value = _value(stubs, graph)
    seconds = time.perf_counter() - started
    if int(value) != expected(leaves):
        raise RuntimeError(f"sum {value} != {expected(leaves)}")
    leaf_bytes = next(n.result_bytes for n in graph.nodes if n.id != TOTAL_ID)
    return {
        metric(leaves): seconds,
        metric(leaves, "submit_s"): submitted - started,
        metric(leaves, "watch_s"): ended - submitted,
        metric(leaves, "fetch_s"): started + seconds - ended,
        "leaf_result_bytes": float(leaf_bytes),
    }


def tilefn(target: str, server_pid: int) -> Metrics:
    """Warm up with one graph of each size, then time one of each (and their CPU)."""
    token = os.environ.get("TILEFN_TOKEN", "").strip()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(target) as channel:
        stubs = _Stubs(
            graph_service_pb2_grpc.GraphServiceStub(channel),
            udf_service_pb2_grpc.UdfServiceStub(channel),
            metadata,
        )
        for leaves in LEAVES:
            run_graph(stubs, leaves)
        found: Metrics = {}
        for leaves in LEAVES:
            before = tree_cpu_seconds(server_pid), tree_cpu_seconds(os.getpid())
            found.update(run_graph(stubs, leaves))
            server = tree_cpu_seconds(server_pid) - before[0]
            client = tree_cpu_seconds(os.getpid()) - before[1]
            found[metric(leaves, "server_cpu_s")] = server
            found[metric(leaves, "client_cpu_s")] = client
            found[metric(leaves, "cpu_s")] = server + client
        return found
