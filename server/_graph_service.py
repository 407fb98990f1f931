"""GraphService: submit, watch, cancel, retry and list graphs of UDFs (see ``_graphs``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import graph_service_pb2_grpc

from ._auth import Authenticator
from ._graph_state import graph_message
from ._graphs import Graphs
from ._request import page_size
from ._status import R, ServiceError, status_mapped, unary_status_mapped
from ._store import GraphQuery
from ._task_service import parse_page_token

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = gpb.DESCRIPTOR.services_by_name["GraphService"].full_name


class GraphService(graph_service_pb2_grpc.GraphServiceServicer):
    """Serves tilefn.v1.GraphService."""

    def __init__(self, auth: Authenticator, graphs: Graphs) -> None:
        self._auth = auth
        self._graphs = graphs

    @unary_status_mapped
    async def SubmitGraph(self, request: gpb.SubmitGraphRequest, context: Context) -> gpb.Graph:
        run = await self._graphs.submit(self._auth.principal(context), request)
        return graph_message(run.record, run.nodes)

    @unary_status_mapped
    async def GetGraph(self, request: gpb.GetGraphRequest, context: Context) -> gpb.Graph:
        principal = self._auth.principal(context)
        record, nodes = await asyncio.to_thread(self._graphs.get, principal, request.graph_id)
        return graph_message(record, nodes)

    @status_mapped
    async def WatchGraph(
        self, request: gpb.WatchGraphRequest, context: Context
    ) -> AsyncIterator[gpb.GraphEvent]:
        async for event in self._graphs.watch(self._auth.principal(context), request.graph_id):
            yield event

    @status_mapped
    async def WatchGraphBatches(
        self, request: gpb.WatchGraphRequest, context: Context
    ) -> AsyncIterator[gpb.GraphEventBatch]:
        principal = self._auth.principal(context)
        async for events in self._graphs.watch_batches(principal, request.graph_id):
            yield gpb.GraphEventBatch(events=events)

    @unary_status_mapped
    async def CancelGraph(self, request: gpb.CancelGraphRequest, context: Context) -> gpb.Graph:
        principal = self._auth.principal(context)
        await self._graphs.cancel(principal, request.graph_id)
        record, nodes = await asyncio.to_thread(self._graphs.get, principal, request.graph_id)
        return graph_message(record, nodes)

    @unary_status_mapped
    async def RetryGraph(self, request: gpb.RetryGraphRequest, context: Context) -> gpb.Graph:
        run = await self._graphs.retry(self._auth.principal(context), request.graph_id)
        return graph_message(run.record, run.nodes)

    @unary_status_mapped
    async def ListGraphs(
        self, request: gpb.ListGraphsRequest, context: Context
    ) -> gpb.ListGraphsResponse:
        principal = self._auth.principal(context)
        size = page_size(request.page_size)
        if request.namespace:
            namespaces: frozenset[str] | None = frozenset({request.namespace})
        else:
            namespaces = None if principal.admin else principal.namespaces
        if request.status not in gpb.GraphStatus.values():
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID, f"unknown status {request.status}", option="status"
            )
        status = gpb.GraphStatus.Name(request.status).removeprefix("GRAPH_STATUS_")
        query = GraphQuery(
            namespaces=namespaces,
            status="" if status == "UNSPECIFIED" else status,
            before=parse_page_token(request.page_token),
            limit=size + 1,
        )
        found = await asyncio.to_thread(self._graphs.list, principal, query)
        page = found[:size]
        token = f"{page[-1].created_at!r}/{page[-1].graph_id}" if len(found) > size else ""
        return gpb.ListGraphsResponse(
            graphs=[graph_message(g, None) for g in page], next_page_token=token
        )
