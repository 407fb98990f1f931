"""The graph methods of Client and AsyncClient, as mixins: a new graph, a graph by id, and
the listing. The graphs themselves are in ``_graph`` and ``_graph_async``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tilefn.v1 import graph_service_pb2 as gpb

from ._graph import Graph
from ._graph_async import AsyncGraph
from ._graph_spec import Seconds, graph_options
from ._graph_state import GRAPH_STATUS, GraphInfo

#: The largest ListGraphs page the server gives.
MAX_PAGE = 1000


def list_request(status: str | None, namespace: str, limit: int | None) -> gpb.ListGraphsRequest:
    """The first ListGraphs page's request, no larger than ``limit`` needs."""
    name = "UNSPECIFIED" if status is None else status.upper()
    if name not in GRAPH_STATUS.values() or (status is not None and name == "UNSPECIFIED"):
        raise ValueError(f"status must be RUNNING, SUCCEEDED, FAILED or CANCELLED: {status!r}")
    return gpb.ListGraphsRequest(
        status=f"GRAPH_STATUS_{name}",
        namespace=namespace,
        page_size=min(limit or 100, MAX_PAGE),
    )


class GraphCalls:
    """Task graphs for the synchronous Client."""

    _graph_stub: Any
    _unary: Callable[[Callable[..., Any], Any], Any]

    def graph(
        self,
        name: str = "",
        *,
        parallelism: int = 0,
        fail_fast: bool = False,
        deadline: Seconds | None = None,
        result_ttl: Seconds | None = None,
    ) -> Graph:
        """A new, empty graph to build (``submit``, ``apply``, ``map``) and ``run``.

        ``parallelism``: the most nodes running at once (0: the server's limit);
        ``fail_fast``: stop everything at the first node that fails for good (by default only
        its descendants are skipped); ``deadline``: seconds the whole graph may run (None:
        24 h); ``result_ttl``: seconds the nodes' stored results are kept (None: the server's
        default, 24 h). Nodes run with this client's ``options`` unless given their own.
        """
        options = graph_options(parallelism, fail_fast, deadline, result_ttl)
        return Graph(self, name, options=options)

    def graph_by_id(self, graph_id: str) -> Graph:
        """A graph submitted earlier (by anyone in the caller's namespaces), with its nodes
        as they are now: ``wait``, ``cancel``, ``retry``, nodes' ``result()``, ``render``."""
        reply = self._unary(self._graph_stub.GetGraph, gpb.GetGraphRequest(graph_id=graph_id))
        graph = Graph(self, reply.name)
        graph._state.load(reply)
        return graph

    def graphs(
        self, *, status: str | None = None, namespace: str = "", limit: int | None = None
    ) -> list[GraphInfo]:
        """The caller's graphs, newest first, without their nodes (with per-state node
        counts); ``status``: RUNNING, SUCCEEDED, FAILED or CANCELLED; at most ``limit``."""
        request = list_request(status, namespace, limit)
        found: list[GraphInfo] = []
        while limit is None or len(found) < limit:
            page = self._unary(self._graph_stub.ListGraphs, request)
            found += [GraphInfo.from_proto(g) for g in page.graphs]
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found if limit is None else found[:limit]


class AsyncGraphCalls:
    """The same for AsyncClient (``graph`` builds without a call, so it is not awaited)."""

    _graph_stub: Any
    _unary: Callable[[Callable[..., Any], Any], Awaitable[Any]]

    def graph(
        self,
        name: str = "",
        *,
        parallelism: int = 0,
        fail_fast: bool = False,
        deadline: Seconds | None = None,
        result_ttl: Seconds | None = None,
    ) -> AsyncGraph:
        """A new, empty graph (see ``Client.graph``)."""
        options = graph_options(parallelism, fail_fast, deadline, result_ttl)
        return AsyncGraph(self, name, options=options)

    async def graph_by_id(self, graph_id: str) -> AsyncGraph:
        request = gpb.GetGraphRequest(graph_id=graph_id)
        reply = await self._unary(self._graph_stub.GetGraph, request)
        graph = AsyncGraph(self, reply.name)
        graph._state.load(reply)
        return graph

    async def graphs(
        self, *, status: str | None = None, namespace: str = "", limit: int | None = None
    ) -> list[GraphInfo]:
        request = list_request(status, namespace, limit)
        found: list[GraphInfo] = []
        while limit is None or len(found) < limit:
            page = await self._unary(self._graph_stub.ListGraphs, request)
            found += [GraphInfo.from_proto(g) for g in page.graphs]
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found if limit is None else found[:limit]
