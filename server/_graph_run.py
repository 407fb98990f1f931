"""Runs one graph in this server process.

Event-driven on the serving loop: a node whose parents all succeeded is queued; queued nodes
start while fewer than ``parallelism`` run; each runs as a stored task (``UdfService.run_node``)
with its references replaced by the parents' stored results, so intermediate results never
leave the server. A failed attempt is retried per the node's policy; a node that fails for good
makes its descendants PARENT_FAILED (or stops the whole graph with ``fail_fast``). The graph
ends when no node can do anything more, so it never hangs: every path ends every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import StatusCode

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_pb2
from tilefn.v1 import udf_service_pb2 as pb

from ._auth import Principal
from ._graph_spec import MAX_NODES, Retry
from ._graph_state import NodeState, counts, dump_nodes
from ._status import R, ServiceError, to_service_error
from ._store import GraphRecord
from ._times import timestamp

log = logging.getLogger(__name__)

#: Seconds between writes of a running graph's state (and at its end).
SAVE_SECONDS = 0.5
#: Failures a retry cannot mend: the request itself is wrong, or the node was stopped.
FINAL_CODES = frozenset(
    {
        StatusCode.INVALID_ARGUMENT,
        StatusCode.FAILED_PRECONDITION,
        StatusCode.NOT_FOUND,
        StatusCode.PERMISSION_DENIED,
        StatusCode.UNAUTHENTICATED,
        StatusCode.CANCELLED,
        StatusCode.UNAVAILABLE,
    }
)


class NodeRunner(Protocol):
    """Runs one node as a stored task (``UdfService.run_node``)."""

    async def run_node(
        self,
        principal: Principal,
        request: pb.ExecuteUdfRequest,
        task_id: str,
        on_started: Callable[[], None],
    ) -> NodeOutcome: ...


@dataclass(frozen=True)
class NodeOutcome:
    """What a graph needs to know of a node that succeeded."""

    result_bytes: int
    #: How many items its result has (see ``TaskSummary.items``).
    items: int | None


@dataclass(frozen=True)
class Stop:
    """Why a graph stops before its nodes are done: the graph's final state and the reason
    given to the nodes cancelled."""

    status: str
    reason: str
    message: str


class GraphRun:
    """One graph's run; see the module docstring."""

    def __init__(
        self,
        record: GraphRecord,
        request: gpb.SubmitGraphRequest,
        *,
        nodes: dict[str, NodeState],
        retries: dict[str, Retry],
        principal: Principal,
        runner: NodeRunner,
        parallelism: int,
        save: Callable[[GraphRecord], None],
    ) -> None:
        self.record = record
        self.nodes = nodes
        self._request = request
        self._retries = retries
        self._principal = principal
        self._runner = runner
        self._parallelism = parallelism
        self._save = save
        self._ready: deque[str] = deque()
        #: Parents a waiting node still waits for (once it has been considered).
        self._waiting: dict[str, int] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Queue[gpb.GraphEvent | None]] = set()
        self._stop: Stop | None = None
        self._failure: NodeState | None = None
        self._dirty = True
        self.finished = asyncio.Event()

    # the run

    async def run(self) -> None:
        """Run until every node has ended; records the graph's final state."""
        loop = asyncio.get_running_loop()
        deadline = self._request.options.deadline.ToNanoseconds() / 1e9 or 24 * 3600.0
        timer = loop.call_later(deadline, self._past_deadline, deadline)
        saver = loop.create_task(self._save_every(SAVE_SECONDS))
        try:
            for node in self.nodes.values():
                if node.status == "WAITING" and node.item is None:
                    self._consider(node)
            self._advance()
            self._check_end()
            await self.finished.wait()
        finally:
            timer.cancel()
            saver.cancel()
            self._write()

    def stop(self, stop: Stop) -> None:
        """End the graph early: nothing more starts, running nodes are cancelled."""
        if self._stop is not None or self.finished.is_set():
            return
        self._stop = stop
        self._ready.clear()
        for node in list(self.nodes.values()):  # not yet running: cancelled where they are
            if not node.ended and node.id not in self._running and not node.instances:
                node.error_reason, node.error_message = stop.reason, stop.message
                node.finished_at = time.time()
                self._set(node, "CANCELLED", gpb.NODE_EVENT_KIND_CANCELLED)
        for node in list(self.nodes.values()):
            if node.instances:
                self._instance_ended(node)
        for runner in self._running.values():
            runner.cancel()
        self._check_end()

    def _past_deadline(self, seconds: float) -> None:
        message = f"the graph ran past its deadline of {seconds:g} s"
        self.stop(Stop("FAILED", R.Name(R.ERROR_REASON_GRAPH_DEADLINE), message))

    # scheduling

    def _consider(self, node: NodeState) -> None:
        """Queue a waiting node whose parents all succeeded (expand a mapped one)."""
        if node.status != "WAITING" or self._stop is not None:
            return
        waiting = self._waiting.get(node.id)
        if waiting is None:  # counted once, then decremented as parents succeed
            waiting = sum(self.nodes[p].status != "SUCCEEDED" for p in node.parents) + 1
        self._waiting[node.id] = waiting = waiting - 1
        if waiting:
            return
        if node.map_over:
            self._expand(node)
            return
        self._set(node, "QUEUED", gpb.NODE_EVENT_KIND_QUEUED)
        self._ready.append(node.id)

    def _advance(self) -> None:
        """Start queued nodes while the graph's parallelism allows."""
        loop = asyncio.get_running_loop()
        while self._ready and len(self._running) < self._parallelism and self._stop is None:
            node = self.nodes[self._ready.popleft()]
            runner = loop.create_task(self._run_node(node), name=f"graph-node-{node.id}")
            self._running[node.id] = runner
            runner.add_done_callback(functools.partial(self._finished_running, node.id))

    def _finished_running(self, node_id: str, _: object) -> None:
        self._running.pop(node_id, None)
        node = self.nodes[node_id]
        if not node.ended:  # cancelled before its first step: its handler never ran
            stop = self._stop or Stop("CANCELLED", R.Name(R.ERROR_REASON_TASK_CANCELLED), "")
            self._end(node, "CANCELLED", stop.reason, stop.message or "the node was cancelled")
        self._advance()
        self._check_end()

    def _expand(self, node: NodeState) -> None:
        """A mapped node's parent is done: make one instance per item of its output."""
        parent = self.nodes[node.map_over]
        count = len(parent.instances) if parent.instances is not None else parent.items
        if node.instances is None:  # after RetryGraph, the instances that succeeded stay
            if count is None or len(self.nodes) + count > MAX_NODES:
                has = "has no items" if count is None else f"has {count} items, too many"
                message = f"node {node.id!r} maps over {parent.id!r}, whose output {has}"
                self._end(node, "FAILED", R.Name(R.ERROR_REASON_ITEMS_INVALID), message)
                return
            node.instances = [f"{node.id}[{i}]" for i in range(count)]
            for i, instance in enumerate(node.instances):
                self.nodes[instance] = NodeState(
                    instance, f"{node.name}[{i}]", node.spec, list(node.parents), item=i,
                    map_over=node.map_over,
                )  # fmt: skip
        self._set(node, "RUNNING", gpb.NODE_EVENT_KIND_EXPANDED)
        for instance in node.instances:
            child = self.nodes[instance]
            if child.status == "WAITING":
                self._set(child, "QUEUED", gpb.NODE_EVENT_KIND_QUEUED)
                self._ready.append(child.id)
        self._instance_ended(node)

    # one node

    async def _run_node(self, node: NodeState) -> None:
        retry = self._retries[node.id.partition("[")[0]]
        request = self._resolved(node)
        try:
            while (failure := await self._attempt(node, request)) is not None:
                if node.attempts >= retry.attempts or failure.code in FINAL_CODES:
                    self._end(node, "FAILED", R.Name(failure.reason), failure.message)
                    return
                node.error_reason, node.error_message = R.Name(failure.reason), failure.message
                self._emit(node, gpb.NODE_EVENT_KIND_RETRIED)
                await asyncio.sleep(retry.delay(node.attempts))
        except asyncio.CancelledError:  # CancelGraph, fail_fast, the deadline, a shutdown
            stop = self._stop or Stop("CANCELLED", R.Name(R.ERROR_REASON_TASK_CANCELLED), "")
            self._end(node, "CANCELLED", stop.reason, stop.message or "the node was cancelled")

    async def _attempt(self, node: NodeState, request: pb.ExecuteUdfRequest) -> ServiceError | None:
        """One attempt (attempts refused for a full queue are not counted); None: it
        succeeded."""
        while True:
            node.attempts += 1
            node.task_id, node.started_at = uuid.uuid4().hex, None
            try:
                outcome = await self._runner.run_node(
                    self._principal, request, node.task_id, functools.partial(self._started, node)
                )
            except Exception as exc:
                error = to_service_error(exc)
                if error.reason != R.ERROR_REASON_QUEUE_FULL:
                    return error
                node.attempts -= 1
                await asyncio.sleep(error.retry_after or 0.1)
                continue
            node.result_bytes, node.items = outcome.result_bytes, outcome.items
            self._end(node, "SUCCEEDED", "", "")
            return None

    def _started(self, node: NodeState) -> None:
        node.started_at = time.time()
        self._set(node, "RUNNING", gpb.NODE_EVENT_KIND_RUNNING)

    def _resolved(self, node: NodeState) -> pb.ExecuteUdfRequest:
        """The node's request with references replaced by the parents' stored results."""
        request = pb.ExecuteUdfRequest()
        request.CopyFrom(self._request.nodes[node.spec].call)
        request.options.store_result = True
        request.options.result_ttl.CopyFrom(self._request.options.result_ttl)
        for arg in (*request.args, *request.kwargs.values()):
            self._resolve(node, arg)
        return request

    def _resolve(self, node: NodeState, arg: udf_pb2.Argument) -> None:
        kind = arg.WhichOneof("kind")
        if kind == "list":
            for item in arg.list.items:
                self._resolve(node, item)
        elif kind == "map":
            for entry in arg.map.entries:
                self._resolve(node, entry.value)
        elif kind == "node":
            self._reference(node, arg, self.nodes[arg.node])

    def _reference(self, node: NodeState, arg: udf_pb2.Argument, parent: NodeState) -> None:
        if node.item is not None and parent.id == node.map_over:  # this instance's one item
            if parent.instances is not None:
                arg.stored_result = self.nodes[parent.instances[node.item]].task_id
            else:
                arg.stored_item.CopyFrom(
                    udf_pb2.StoredItem(task_id=parent.task_id, index=node.item)
                )
        elif parent.instances is not None:  # a mapped node: the list of its outputs
            outputs = [
                udf_pb2.Argument(stored_result=self.nodes[i].task_id) for i in parent.instances
            ]
            arg.list.CopyFrom(udf_pb2.ArgumentList(items=outputs))
        else:
            arg.stored_result = parent.task_id

    # endings

    def _end(self, node: NodeState, status: str, reason: str, message: str) -> None:
        """A node has ended: tell its children (or its mapped node) and the watchers."""
        node.error_reason, node.error_message = reason, message
        node.finished_at = time.time()
        kind = {
            "SUCCEEDED": gpb.NODE_EVENT_KIND_SUCCEEDED,
            "FAILED": gpb.NODE_EVENT_KIND_FAILED,
            "PARENT_FAILED": gpb.NODE_EVENT_KIND_PARENT_FAILED,
        }.get(status, gpb.NODE_EVENT_KIND_CANCELLED)
        self._set(node, status, kind)
        if node.item is not None:
            self._instance_ended(self.nodes[node.id.rpartition("[")[0]])
            return
        if status == "SUCCEEDED":
            for child in node.children:
                self._consider(self.nodes[child])
            return
        self._parent_failed(node)
        if status == "FAILED":
            self._failure = self._failure or node
            if self._request.options.fail_fast:
                message = f"the graph stopped at the failure of node {node.id!r}"
                self.stop(Stop("FAILED", R.Name(R.ERROR_REASON_GRAPH_STOPPED), message))

    def _parent_failed(self, node: NodeState) -> None:
        for child_id in node.children:
            child = self.nodes[child_id]
            if child.status == "WAITING":
                message = f"parent {node.id!r} ended {node.status}"
                self._end(child, "PARENT_FAILED", R.Name(R.ERROR_REASON_PARENT_FAILED), message)

    def _instance_ended(self, mapped: NodeState) -> None:
        """End a mapped node once all its instances have."""
        instances = [self.nodes[i] for i in mapped.instances or ()]
        if mapped.ended or not all(i.ended for i in instances):
            return
        failed = [i for i in instances if i.status != "SUCCEEDED"]
        if not failed:
            mapped.result_bytes = sum(i.result_bytes for i in instances)
            self._end(mapped, "SUCCEEDED", "", "")
            return
        if self._stop is not None:
            self._end(mapped, "CANCELLED", self._stop.reason, self._stop.message)
            return
        first = failed[0]
        message = f"{len(failed)} of {len(instances)} instances did not succeed; {first.id}: "
        self._end(mapped, "FAILED", first.error_reason, message + first.error_message)

    def _check_end(self) -> None:
        if self.finished.is_set() or self._running or self._ready:
            return
        if not all(node.ended for node in self.nodes.values()):
            return
        stopped = self._stop is not None and self._stop.reason != R.Name(
            R.ERROR_REASON_GRAPH_STOPPED
        )
        if self._stop is not None and stopped:
            status, reason, message = self._stop.status, self._stop.reason, self._stop.message
        elif self._failure is not None:
            failed = self._failure
            status, reason = "FAILED", failed.error_reason
            message = f"node {failed.id!r} failed: {failed.error_message}"
        elif all(node.status == "SUCCEEDED" for node in self.nodes.values()):
            status, reason, message = "SUCCEEDED", "", ""
        else:
            status, reason, message = "FAILED", R.Name(R.ERROR_REASON_PARENT_FAILED), ""
        self.record = replace(
            self.record, status=status, finished_at=time.time(),  # type: ignore[arg-type]
            error_reason=reason, error_message=message,
        )  # fmt: skip
        self._write()
        event = gpb.GraphEvent(
            graph_id=self.record.graph_id,
            graph_status=f"GRAPH_STATUS_{status}",
            time=timestamp(time.time()),
        )
        for queue in self._watchers:
            queue.put_nowait(event)
            queue.put_nowait(None)
        self.finished.set()

    # watching and saving

    def watch(self) -> asyncio.Queue[gpb.GraphEvent | None]:
        """A queue of events: each node's state now, then every change, then None."""
        queue: asyncio.Queue[gpb.GraphEvent | None] = asyncio.Queue()
        now = timestamp(time.time())
        for node in list(self.nodes.values()):
            queue.put_nowait(self._event(node, gpb.NODE_EVENT_KIND_STATE, now))
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[gpb.GraphEvent | None]) -> None:
        self._watchers.discard(queue)

    def _set(self, node: NodeState, status: str, kind: int) -> None:
        node.status = status
        self._emit(node, kind)

    def _emit(self, node: NodeState, kind: int) -> None:
        self._dirty = True
        if self._watchers:
            event = self._event(node, kind, timestamp(time.time()))
            for queue in self._watchers:
                queue.put_nowait(event)

    def _event(self, node: NodeState, kind: Any, when: Timestamp | None) -> gpb.GraphEvent:
        return gpb.GraphEvent(
            graph_id=self.record.graph_id, node=node.message(), kind=kind, time=when
        )

    async def _save_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self._dirty:
                self._write()

    def save_now(self) -> None:
        """Queue the graph's state for the store now."""
        self._write()

    def _write(self) -> None:
        self._dirty = False
        self.record = replace(
            self.record, nodes=dump_nodes(self.nodes), counts=json.dumps(counts(self.nodes))
        )
        with contextlib.suppress(Exception):
            self._save(self.record)
