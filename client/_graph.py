"""Task graphs for the synchronous Client: build with ``submit``/``apply``/``map``, then
``run`` (SubmitGraph, then follow WatchGraphBatches), ``wait``, ``cancel``, ``retry``; each node's
``result()`` fetches its stored output. See docs/graphs.md, "Python client"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from tilefn.v1 import graph_service_pb2 as gpb

from ._exceptions import from_rpc_error
from ._graph_base import GraphBase, NodeBase
from ._graph_progress import Progress
from ._graph_state import GRAPH_ENDED, GraphEvent, NodeFailedError
from ._result import Logs

#: Seconds SubmitGraph may take: the server checks every node's request before answering.
SUBMIT_TIMEOUT = 120.0


class Node(NodeBase):
    """A node of a :class:`Graph` (see ``NodeBase`` for its state)."""

    _graph: Graph

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the node ends and return its output's Python value (a mapped node's:
        the list of its instances' outputs). ``NodeFailedError`` (a ``TaskFailedError``) if
        it failed, a parent failed, or it was cancelled; TimeoutError past ``timeout``."""
        graph = self._graph
        graph._require_submitted()
        graph._follow(lambda: self.info.ended, timeout, None)
        info = self.info
        if info.status != "SUCCEEDED":
            raise NodeFailedError(info, graph.graph_id)
        if self.mapped:
            return [instance.result() for instance in self.instances]
        return graph._client.fetch(info.task_id)

    def logs(self, *, follow: bool = False) -> Logs:
        """What the node's latest attempt printed (so far); ``follow`` waits for it to end."""
        logs: Logs = self._graph._client.task_logs(self._task(), follow=follow)
        return logs


class Graph(GraphBase[Node]):
    """A graph of UDF nodes run on the server (from ``Client.graph``).

    >>> g = client.graph("etl")
    >>> a = g.submit(lambda: 20)
    >>> b = g.submit(lambda x, y: x + y, a, 22)  # a's output, on the server
    >>> g.run().status, b.result()
    ('SUCCEEDED', 42)
    """

    _node_type = Node

    def run(self, *, wait: bool = True, progress: bool | None = None) -> Graph:
        """Submit the graph; with ``wait``, follow it until it ends (see ``wait``). Returns
        the graph, whether it succeeded or not (``status``; nodes' ``result()`` raise)."""
        request = self._submit_request()
        try:
            reply = self._client._graph_stub.SubmitGraph(
                request, timeout=SUBMIT_TIMEOUT, metadata=self._client._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        self._state.load(reply)
        return self.wait(progress=progress) if wait else self

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> Graph:
        """Follow the graph's events until it ends, keeping the nodes' states current.

        ``progress``: a live one-line summary on stderr (None: only when stderr is a
        terminal). TimeoutError past ``timeout`` seconds (the graph goes on).
        """
        self._require_submitted()
        self._follow(lambda: False, timeout, self._progress(progress))
        return self

    def watch(self) -> Iterator[GraphEvent]:
        """The graph's events as they happen (first every node as it is now), until the
        graph's final event; the nodes' states follow them."""
        self._require_submitted()
        call = self._client._graph_stub.WatchGraphBatches(
            gpb.WatchGraphRequest(graph_id=self.graph_id), metadata=self._client._metadata
        )
        try:
            for message in _events(call):
                event = GraphEvent.from_proto(message)
                self._state.apply(event)
                yield event
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def cancel(self) -> Graph:
        """Stop the graph: running nodes are killed, the others cancelled."""
        self._require_submitted()
        request = gpb.CancelGraphRequest(graph_id=self.graph_id)
        self._state.load(self._client._unary(self._client._graph_stub.CancelGraph, request))
        return self

    def retry(self, *, wait: bool = True, progress: bool | None = None) -> Graph:
        """Run the nodes that did not succeed again (and their descendants); succeeded
        nodes keep their stored results. With ``wait``, follow it until it ends."""
        self._require_submitted()
        request = gpb.RetryGraphRequest(graph_id=self.graph_id)
        self._state.load(self._client._unary(self._client._graph_stub.RetryGraph, request))
        return self.wait(progress=progress) if wait else self

    def refresh(self) -> Graph:
        """Ask the server for the graph and all its nodes now."""
        self._require_submitted()
        request = gpb.GetGraphRequest(graph_id=self.graph_id)
        self._state.load(self._client._unary(self._client._graph_stub.GetGraph, request))
        return self

    @property
    def status(self) -> str:
        """PENDING before ``run``, then RUNNING, SUCCEEDED, FAILED or CANCELLED (asks the
        server while the graph runs, updating every node)."""
        if self.graph_id and self._state.status not in GRAPH_ENDED:
            self.refresh()
        return self._state.status

    def _follow(
        self, done: Callable[[], bool], timeout: float | None, progress: Progress | None
    ) -> None:
        """Watch until ``done()`` or the graph ends; the graph's record is read again at
        its end (the final event has no error message)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not (done() or self._state.status in GRAPH_ENDED):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"graph {self.graph_id} is still {self._state.status}")
                if self._watch_once(done, remaining, progress):
                    self.refresh()
        finally:
            if progress is not None:
                progress.close(self._state.counts())

    def _watch_once(
        self, done: Callable[[], bool], timeout: float | None, progress: Progress | None
    ) -> bool:
        """One WatchGraphBatches stream, until ``done()`` or the final event (then True)."""
        request = gpb.WatchGraphRequest(graph_id=self.graph_id)
        call = self._client._graph_stub.WatchGraphBatches(
            request, timeout=timeout, metadata=self._client._metadata
        )
        try:
            for message in _events(call):
                final = self._state.apply(GraphEvent.from_proto(message))
                if progress is not None:
                    progress.update(self._state.counts())
                if final or done():
                    return final
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
                raise TimeoutError(f"graph {self.graph_id} is still running") from None
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
        self.refresh()  # the stream ended early (a server going away): start again from now
        return False


def _events(call: Iterable[gpb.GraphEventBatch]) -> Iterator[gpb.GraphEvent]:
    """The events of a WatchGraphBatches stream, one by one."""
    for batch in call:
        yield from batch.events
