"""Build graphs from raw protobuf messages (Python source UDFs, JSON arguments) and run them
through GraphService stubs, for the server-side graph tests."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import graph_service_pb2_grpc, udf_pb2, udf_service_pb2_grpc
from tilefn.v1 import udf_service_pb2 as pb


def arg(value: Any) -> udf_pb2.Argument:
    """A JSON argument; ``ref("x")`` values, lists and dicts of them, nest as references."""
    if isinstance(value, udf_pb2.Argument):
        return value
    nested = udf_pb2.Argument | list | dict
    if isinstance(value, list) and any(isinstance(v, nested) for v in value):
        return udf_pb2.Argument(list=udf_pb2.ArgumentList(items=[arg(v) for v in value]))
    if isinstance(value, dict) and any(isinstance(v, nested) for v in value.values()):
        entries = [udf_pb2.ArgumentEntry(key=k, value=arg(v)) for k, v in value.items()]
        return udf_pb2.Argument(map=udf_pb2.ArgumentMap(entries=entries))
    return udf_pb2.Argument(json=json.dumps(value))


def ref(node_id: str) -> udf_pb2.Argument:
    return udf_pb2.Argument(node=node_id)


def node(
    node_id: str,
    source: str,
    *args: Any,
    depends_on: tuple[str, ...] = (),
    map_over: str = "",
    attempts: int = 0,
    backoff: float = 0.0,
    timeout: float = 0.0,
    **kwargs: Any,
) -> gpb.GraphNodeSpec:
    """A node running the one function defined in ``source``."""
    call = pb.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text=textwrap.dedent(source))),
        args=[arg(a) for a in args],
        kwargs={k: arg(v) for k, v in kwargs.items()},
    )
    if timeout:
        call.options.timeout.FromNanoseconds(int(timeout * 1e9))
    spec = gpb.GraphNodeSpec(id=node_id, call=call, depends_on=depends_on, map_over=map_over)
    if attempts:
        spec.retry.attempts = attempts
        spec.retry.backoff.FromNanoseconds(int(backoff * 1e9))
    return spec


def submit(channel: Any, *nodes: gpb.GraphNodeSpec, **options: Any) -> gpb.Graph:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    request = gpb.SubmitGraphRequest(name="test", nodes=nodes, options=gpb.GraphOptions(**options))
    return stub.SubmitGraph(request, timeout=60)


def watch(channel: Any, graph_id: str, timeout: float = 120) -> list[gpb.GraphEvent]:
    """Every event until the graph ends."""
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    return list(stub.WatchGraph(gpb.WatchGraphRequest(graph_id=graph_id), timeout=timeout))


def run(channel: Any, *nodes: gpb.GraphNodeSpec, **options: Any) -> gpb.Graph:
    """Submit, wait for the end, return the final graph."""
    graph = submit(channel, *nodes, **options)
    watch(channel, graph.graph_id)
    return get(channel, graph.graph_id)


def get(channel: Any, graph_id: str) -> gpb.Graph:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    return stub.GetGraph(gpb.GetGraphRequest(graph_id=graph_id), timeout=30)


def states(graph: gpb.Graph) -> dict[str, str]:
    """Node id -> status name without its prefix."""
    return {n.id: gpb.NodeStatus.Name(n.status).removeprefix("NODE_STATUS_") for n in graph.nodes}


def value(channel: Any, graph: gpb.Graph, node_id: str) -> Any:
    """A node's output, fetched and decoded."""
    from tilefn import codec

    task_id = next(n.task_id for n in graph.nodes if n.id == node_id)
    stub = udf_service_pb2_grpc.UdfServiceStub(channel)
    pieces = stub.FetchResult(pb.FetchResultRequest(task_id=task_id), timeout=30)
    return codec.from_ipc(b"".join(p.ipc for p in pieces if p.WhichOneof("kind") == "ipc"))
