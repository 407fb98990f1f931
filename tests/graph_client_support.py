"""A GraphService stand-in for the client's unit tests: it runs a submitted graph at once, in
this process, as the real server would (pickled and source UDFs called, references resolved
to parents' outputs, nested lists and maps, dynamic fan-out with instances "<id>[<i>]",
failures making descendants PARENT_FAILED), records the events, and replays them to every
watch. No sandbox, no gRPC: only the message contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cloudpickle
import grpc
import numpy as np

from tilefn import codec
from tilefn.client import Options
from tilefn.client._exceptions import from_rpc_error
from tilefn.client._graph_calls import AsyncGraphCalls, GraphCalls
from tilefn.client._result import Logs
from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_pb2

FINAL = ("SUCCEEDED", "FAILED", "PARENT_FAILED", "CANCELLED")
SUCCEEDED = gpb.NODE_STATUS_SUCCEEDED


class FakeRpcError(grpc.RpcError):
    """What a grpc call raises, with a status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[()]:
        return ()


class FakeCall:
    """A server-streaming call: its messages, then maybe an error; ``cancel`` is recorded."""

    def __init__(self, messages: list[Any], error: grpc.RpcError | None = None) -> None:
        self.messages, self.error, self.cancelled, self.taken = messages, error, False, 0

    def __iter__(self) -> Iterator[Any]:
        for message in self.messages:
            self.taken += 1
            yield message
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self.cancelled = True


class FakeGraphServer:
    """See the module docstring. ``stall``: graphs never end (watches time out)."""

    def __init__(self, *, stall: bool = False) -> None:
        self.stall = stall
        self.requests: list[gpb.SubmitGraphRequest] = []
        self.graphs: dict[str, gpb.Graph] = {}
        self.events: dict[str, list[gpb.GraphEvent]] = {}
        self.results: dict[str, Any] = {}
        self.calls: list[FakeCall] = []
        self.error: grpc.RpcError | None = None  # raised by the next unary call

    # the stub's methods

    def SubmitGraph(self, request: gpb.SubmitGraphRequest, **_: Any) -> gpb.Graph:
        self._raise()
        self.requests.append(request)
        graph_id = f"graph-{len(self.requests)}"
        run = _Run(graph_id, request)
        waiting = gpb.Graph(graph_id=graph_id, name=request.name, status="GRAPH_STATUS_RUNNING")
        waiting.nodes.extend(run.waiting())
        if self.stall:
            self.graphs[graph_id], self.events[graph_id] = waiting, []
            return waiting
        self.graphs[graph_id], self.events[graph_id] = run.finish(self.results)
        return waiting

    def WatchGraph(self, request: gpb.WatchGraphRequest, timeout: Any = None, **_: Any) -> FakeCall:
        graph = self.graphs[request.graph_id]
        if self.stall:
            states = [_event(request.graph_id, n, "STATE") for n in graph.nodes]
            error = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            call = FakeCall(states, error)
        else:
            call = FakeCall(list(self.events[request.graph_id]))
        self.calls.append(call)
        return call

    def WatchGraphBatches(
        self, request: gpb.WatchGraphRequest, timeout: Any = None, **_: Any
    ) -> FakeCall:
        """WatchGraph's events, one to a batch (how they are cut must not matter)."""
        call = self.WatchGraph(request, timeout)
        call.messages = [gpb.GraphEventBatch(events=[event]) for event in call.messages]
        return call

    def GetGraph(self, request: gpb.GetGraphRequest, **_: Any) -> gpb.Graph:
        self._raise()
        if request.graph_id not in self.graphs:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no graph {request.graph_id!r}")
        return self.graphs[request.graph_id]

    def CancelGraph(self, request: gpb.CancelGraphRequest, **_: Any) -> gpb.Graph:
        graph = self.graphs[request.graph_id]
        graph.status = gpb.GRAPH_STATUS_CANCELLED
        for node in graph.nodes:
            if gpb.NodeStatus.Name(node.status).removeprefix("NODE_STATUS_") not in FINAL:
                node.status = gpb.NODE_STATUS_CANCELLED
                node.error_reason = "ERROR_REASON_TASK_CANCELLED"
        return graph

    def RetryGraph(self, request: gpb.RetryGraphRequest, **_: Any) -> gpb.Graph:
        self.stall = False
        spec = self.requests[int(request.graph_id.split("-")[1]) - 1]
        graph, self.events[request.graph_id] = _Run(request.graph_id, spec).finish(self.results)
        graph.retries = 1
        self.graphs[request.graph_id] = graph
        running = gpb.Graph(graph_id=request.graph_id, status="GRAPH_STATUS_RUNNING", retries=1)
        return running

    def ListGraphs(self, request: gpb.ListGraphsRequest, **_: Any) -> gpb.ListGraphsResponse:
        ids = sorted(self.graphs, reverse=True)
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = [gpb.Graph(graph_id=i, status=self.graphs[i].status) for i in ids][
            start : start + size
        ]
        more = start + size < len(ids)
        return gpb.ListGraphsResponse(
            graphs=page, next_page_token=str(start + size) if more else ""
        )

    def _raise(self) -> None:
        error, self.error = self.error, None
        if error is not None:
            raise error


class _Run:
    """One run of a graph: values by node id, node messages, events."""

    def __init__(self, graph_id: str, request: gpb.SubmitGraphRequest) -> None:
        self.graph_id = graph_id
        self.request = request
        self.values: dict[str, Any] = {}
        self.nodes: dict[str, gpb.GraphNode] = {}
        self.events: list[gpb.GraphEvent] = []

    def waiting(self) -> list[gpb.GraphNode]:
        return [
            gpb.GraphNode(id=s.id, name=s.name or s.id, status="NODE_STATUS_WAITING",
                          parents=_parents(s))
            for s in self.request.nodes
        ]  # fmt: skip

    def finish(self, results: dict[str, Any]) -> tuple[gpb.Graph, list[gpb.GraphEvent]]:
        for node in self.waiting():
            self.nodes[node.id] = node
            self._emit(node, "STATE")
        for spec in self.request.nodes:
            self._node(spec, results)
        failed = any(n.status != gpb.NODE_STATUS_SUCCEEDED for n in self.nodes.values())
        status = "GRAPH_STATUS_FAILED" if failed else "GRAPH_STATUS_SUCCEEDED"
        self.events.append(gpb.GraphEvent(graph_id=self.graph_id, graph_status=status))
        graph = gpb.Graph(graph_id=self.graph_id, name=self.request.name, status=status)
        graph.nodes.extend(self.nodes.values())
        if failed:
            graph.error_reason = "ERROR_REASON_UDF_RAISED"
        return graph, self.events

    def _node(self, spec: gpb.GraphNodeSpec, results: dict[str, Any]) -> None:
        node = self.nodes[spec.id]
        if any(self.nodes[p].status != gpb.NODE_STATUS_SUCCEEDED for p in node.parents):
            self._end(node, "PARENT_FAILED", "ERROR_REASON_PARENT_FAILED", "a parent failed")
            return
        if not spec.map_over:
            self.values[spec.id] = self._call(node, spec, {}, results)
            return
        items = _items(self.values[spec.map_over])
        node.instances = len(items)
        node.status = gpb.NODE_STATUS_RUNNING
        self._emit(node, "EXPANDED")
        outputs = []
        for i, item in enumerate(items):
            instance = gpb.GraphNode(id=f"{spec.id}[{i}]", status="NODE_STATUS_WAITING")
            instance.parents.extend(node.parents)
            self.nodes[instance.id] = instance
            outputs.append(self._call(instance, spec, {spec.map_over: item}, results))
        self.values[spec.id] = outputs
        ok = all(self.nodes[f"{spec.id}[{i}]"].status == SUCCEEDED for i in range(len(items)))
        self._end(node, "SUCCEEDED" if ok else "FAILED", "" if ok else "ERROR_REASON_UDF_RAISED")

    def _call(
        self,
        node: gpb.GraphNode,
        spec: gpb.GraphNodeSpec,
        items: dict[str, Any],
        results: dict[str, Any],
    ) -> Any:
        for kind in ("QUEUED", "RUNNING"):
            node.status = gpb.NodeStatus.Value(f"NODE_STATUS_{kind}")
            self._emit(node, kind)
        node.attempts += 1
        node.task_id = f"task-{node.id}"
        try:
            args = [{"uri": a.uri} for a in spec.call.arrays]
            args += [self._value(a, items) for a in spec.call.args]
            kwargs = {k: self._value(a, items) for k, a in spec.call.kwargs.items()}
            value = _udf(spec.call.udf)(*args, **kwargs)
        except Exception as exc:
            self._end(node, "FAILED", "ERROR_REASON_UDF_RAISED", f"{type(exc).__name__}: {exc}")
            return None
        results[node.task_id] = value
        self._end(node, "SUCCEEDED", "")
        return value

    def _value(self, arg: udf_pb2.Argument, items: dict[str, Any]) -> Any:
        kind = arg.WhichOneof("kind")
        if kind == "node":
            return items[arg.node] if arg.node in items else self.values[arg.node]
        if kind == "list":
            return [self._value(a, items) for a in arg.list.items]
        if kind == "map":
            return {e.key: self._value(e.value, items) for e in arg.map.entries}
        if kind == "json":
            return json.loads(arg.json)
        if kind == "pickled":
            return cloudpickle.loads(arg.pickled.data)
        if kind == "arrow_ipc":
            return codec.from_ipc(arg.arrow_ipc)
        raise AssertionError(f"the fake server does not take {kind} arguments")

    def _end(self, node: gpb.GraphNode, status: str, reason: str, message: str = "") -> None:
        node.status = gpb.NodeStatus.Value(f"NODE_STATUS_{status}")
        node.error_reason, node.error_message = reason, message
        self._emit(node, status)

    def _emit(self, node: gpb.GraphNode, kind: str) -> None:
        self.events.append(_event(self.graph_id, node, kind))


def _event(graph_id: str, node: gpb.GraphNode, kind: str) -> gpb.GraphEvent:
    event = gpb.GraphEvent(graph_id=graph_id, kind=f"NODE_EVENT_KIND_{kind}")
    event.node.CopyFrom(node)
    return event


def _parents(spec: gpb.GraphNodeSpec) -> list[str]:
    from tilefn.server._graph_spec import node_refs  # the server's own reading of references

    refs = sorted(set(node_refs(spec.call.args)) | set(node_refs(spec.call.kwargs.values())))
    return [p for p in dict.fromkeys([*refs, *spec.depends_on, spec.map_over]) if p]


def _items(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, np.ndarray):
        return list(value)
    raise AssertionError(f"no items in {value!r}")


def _udf(spec: udf_pb2.UdfSpec) -> Any:
    if spec.WhichOneof("kind") == "pickled":
        return cloudpickle.loads(spec.pickled.data)
    if spec.WhichOneof("kind") == "source":
        namespace: dict[str, Any] = {}
        exec(spec.source.text, namespace)
        functions = [v for k, v in namespace.items() if callable(v) and not k.startswith("__")]
        return namespace[spec.source.entry_point] if spec.source.entry_point else functions[0]
    raise AssertionError("the fake server does not know registered UDFs")


class FakeClient(GraphCalls):
    """What a Graph needs of a Client, over a FakeGraphServer."""

    def __init__(self, server: FakeGraphServer | None = None, options: Options | None = None):
        self.server = server or FakeGraphServer()
        self._graph_stub = self.server
        self._metadata = ()
        self.options = options or Options()

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def fetch(self, task_id: str) -> Any:
        return self.server.results[task_id]

    def task_logs(self, task_id: str, *, follow: bool = False) -> Logs:
        return Logs(f"printed by {task_id}\n", 0, False)


class _AsyncCall:
    def __init__(self, call: FakeCall) -> None:
        self._call = call

    async def __aiter__(self) -> AsyncIterator[Any]:
        for message in self._call.messages:
            yield message
        if self._call.error is not None:  # a stalled graph: the stream stays open
            await asyncio.sleep(3600)

    def cancel(self) -> None:
        self._call.cancel()


class _AsyncStub:
    """The FakeGraphServer's methods, awaited as grpc.aio's are."""

    def __init__(self, server: FakeGraphServer) -> None:
        self._server = server

    def WatchGraphBatches(self, request: Any, **kwargs: Any) -> _AsyncCall:
        return _AsyncCall(self._server.WatchGraphBatches(request))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._server, name)

        async def call(request: Any, **kwargs: Any) -> Any:
            return method(request, **kwargs)

        return call


class FakeAsyncClient(AsyncGraphCalls):
    """What an AsyncGraph needs of an AsyncClient, over a FakeGraphServer."""

    def __init__(self, server: FakeGraphServer | None = None) -> None:
        self.server = server or FakeGraphServer()
        self._graph_stub = _AsyncStub(self.server)
        self._metadata = ()
        self.options = Options()

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def fetch(self, task_id: str) -> Any:
        return self.server.results[task_id]

    async def task_logs(self, task_id: str, *, follow: bool = False) -> Logs:
        return Logs(f"printed by {task_id}\n", 0, False)
