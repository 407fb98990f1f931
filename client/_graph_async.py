"""Task graphs for the AsyncClient: built exactly as :class:`Graph` is; running, waiting,
cancelling, retrying and nodes' results are awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from tilefn.v1 import graph_service_pb2 as gpb

from ._exceptions import from_rpc_error
from ._graph import SUBMIT_TIMEOUT
from ._graph_base import GraphBase, NodeBase
from ._graph_progress import Progress
from ._graph_state import GRAPH_ENDED, GraphEvent, NodeFailedError
from ._result import Logs


class AsyncNode(NodeBase):
    """A node of an :class:`AsyncGraph`; ``result()`` and ``logs()`` are awaited."""

    _graph: AsyncGraph

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the node ends and return its output (see ``Node.result``)."""
        graph = self._graph
        graph._require_submitted()
        await graph._follow(lambda: self.info.ended, timeout, None)
        info = self.info
        if info.status != "SUCCEEDED":
            raise NodeFailedError(info, graph.graph_id)
        if self.mapped:
            return [await instance.result() for instance in self.instances]
        return await graph._client.fetch(info.task_id)

    async def logs(self, *, follow: bool = False) -> Logs:
        """What the node's latest attempt printed (so far); ``follow`` waits for it to end."""
        logs: Logs = await self._graph._client.task_logs(self._task(), follow=follow)
        return logs


class AsyncGraph(GraphBase[AsyncNode]):
    """The asyncio form of :class:`Graph` (from ``AsyncClient.graph``)."""

    _node_type = AsyncNode

    async def run(self, *, wait: bool = True, progress: bool | None = None) -> AsyncGraph:
        """Submit the graph; with ``wait``, follow it until it ends (see ``Graph.run``)."""
        request = self._submit_request()
        try:
            reply = await self._client._graph_stub.SubmitGraph(
                request, timeout=SUBMIT_TIMEOUT, metadata=self._client._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        self._state.load(reply)
        return await self.wait(progress=progress) if wait else self

    async def wait(
        self, timeout: float | None = None, *, progress: bool | None = None
    ) -> AsyncGraph:
        """Follow the graph until it ends (see ``Graph.wait``)."""
        self._require_submitted()
        await self._follow(lambda: False, timeout, self._progress(progress))
        return self

    async def watch(self) -> AsyncIterator[GraphEvent]:
        """The graph's events as they happen, until its final one (see ``Graph.watch``)."""
        self._require_submitted()
        call = self._client._graph_stub.WatchGraphBatches(
            gpb.WatchGraphRequest(graph_id=self.graph_id), metadata=self._client._metadata
        )
        try:
            async for message in _events(call):
                event = GraphEvent.from_proto(message)
                self._state.apply(event)
                yield event
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def cancel(self) -> AsyncGraph:
        """Stop the graph: running nodes are killed, the others cancelled."""
        self._require_submitted()
        request = gpb.CancelGraphRequest(graph_id=self.graph_id)
        self._state.load(await self._client._unary(self._client._graph_stub.CancelGraph, request))
        return self

    async def retry(self, *, wait: bool = True, progress: bool | None = None) -> AsyncGraph:
        """Run the nodes that did not succeed again (see ``Graph.retry``)."""
        self._require_submitted()
        request = gpb.RetryGraphRequest(graph_id=self.graph_id)
        self._state.load(await self._client._unary(self._client._graph_stub.RetryGraph, request))
        return await self.wait(progress=progress) if wait else self

    async def refresh(self) -> AsyncGraph:
        """Ask the server for the graph and all its nodes now."""
        self._require_submitted()
        request = gpb.GetGraphRequest(graph_id=self.graph_id)
        self._state.load(await self._client._unary(self._client._graph_stub.GetGraph, request))
        return self

    async def status(self) -> str:
        """The graph's status (asks the server while it runs, updating every node)."""
        if self.graph_id and self._state.status not in GRAPH_ENDED:
            await self.refresh()
        return self._state.status

    async def _follow(
        self, done: Callable[[], bool], timeout: float | None, progress: Progress | None
    ) -> None:
        """Watch until ``done()`` or the graph ends (then read its record again)."""
        try:
            async with asyncio.timeout(timeout):
                while not (done() or self._state.status in GRAPH_ENDED):
                    if await self._watch_once(done, progress):
                        await self.refresh()
        finally:
            if progress is not None:
                progress.close(self._state.counts())

    async def _watch_once(self, done: Callable[[], bool], progress: Progress | None) -> bool:
        request = gpb.WatchGraphRequest(graph_id=self.graph_id)
        call = self._client._graph_stub.WatchGraphBatches(request, metadata=self._client._metadata)
        try:
            async for message in _events(call):
                final = self._state.apply(GraphEvent.from_proto(message))
                if progress is not None:
                    progress.update(self._state.counts())
                if final or done():
                    return final
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
        await self.refresh()  # the stream ended early: start again from now
        return False


async def _events(call: AsyncIterator[gpb.GraphEventBatch]) -> AsyncIterator[gpb.GraphEvent]:
    """The events of a WatchGraphBatches stream, one by one."""
    async for batch in call:
        for event in batch.events:
            yield event
