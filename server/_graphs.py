"""Graphs of this server: submit, find, list, watch, cancel, retry; recovery after a crash and
the stop at a shutdown. Each running graph is a ``GraphRun``; its state is in the store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_service_pb2 as pb

from ._auth import Principal
from ._graph_run import GraphRun, NodeRunner, Stop
from ._graph_spec import plan_graph
from ._graph_state import ENDED, NodeState, counts, dump_nodes, link_children, load_nodes
from ._metrics import Metrics
from ._replicas import OWNER
from ._results import is_stored
from ._status import R, ServiceError
from ._store import GraphQuery, GraphRecord, Store
from ._tasks import Tasks
from ._times import timestamp
from ._writer import StoreWriter

#: How often a watch of a graph run by another server process looks at the store.
POLL_SECONDS = 0.5
#: A batch of WatchGraphBatches.
Events = list[gpb.GraphEvent]
#: Checks one node's request as ExecuteUdf would (``UdfService.check``).
Check = Callable[[Principal, pb.ExecuteUdfRequest], Awaitable[None]]


class Graphs:
    """See the module docstring."""

    def __init__(
        self,
        store: Store,
        writer: StoreWriter,
        tasks: Tasks,
        *,
        runner: NodeRunner,
        check: Check,
        max_parallel: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._tasks = tasks
        self._runner = runner
        self._check = check
        self._max_parallel = max_parallel
        self._metrics = metrics
        self._live: dict[str, GraphRun] = {}
        self._runs: set[asyncio.Task[None]] = set()

    # lifecycle

    async def submit(self, principal: Principal, request: gpb.SubmitGraphRequest) -> GraphRun:
        """Check the graph and every node's request, then start it."""
        principal.require("run")
        plans = plan_graph(request)
        self._options(request.options)
        for node in request.nodes:
            try:
                await self._check(principal, _without_references(node.call))
            except ServiceError as error:
                error.message = f"node {node.id!r}: {error.message}"
                error.metadata.setdefault("node", node.id)
                raise
        record = GraphRecord(
            graph_id=uuid.uuid4().hex,
            namespace=principal.namespace,
            token_id=principal.token_id,
            name=request.name[:256],
            status="RUNNING",
            owner=OWNER,
            created_at=time.time(),
            spec=request.SerializeToString(),
            nodes="[]",
        )
        nodes = {
            p.id: NodeState(p.id, p.name, p.index, list(p.parents), map_over=p.map_over)
            for p in plans
        }
        link_children(nodes)
        return await self._start(record, request, nodes, principal)

    def _options(self, options: gpb.GraphOptions) -> None:
        if options.deadline.ToNanoseconds() < 0:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID, "deadline cannot be negative", option="deadline"
            )
        self._tasks.ttl(options.result_ttl.ToNanoseconds() / 1e9)  # OPTION_INVALID past the max

    async def _start(
        self,
        record: GraphRecord,
        request: gpb.SubmitGraphRequest,
        nodes: dict[str, NodeState],
        principal: Principal,
    ) -> GraphRun:
        """Write the graph to the store (it is never lost once the caller has its id), then
        run it."""
        record = dataclasses.replace(
            record, nodes=dump_nodes(nodes), counts=json.dumps(counts(nodes))
        )
        await asyncio.to_thread(self._store.save_graphs, [record])
        retries = {p.id: p.retry for p in plan_graph(request)}
        parallelism = min(request.options.parallelism or self._max_parallel, self._max_parallel)
        run = GraphRun(
            record, request, nodes=nodes, retries=retries, principal=principal,
            runner=self._runner, parallelism=parallelism, save=self._writer.save_graph,
        )  # fmt: skip
        self._live[record.graph_id] = run
        if self._metrics is not None:
            self._metrics.graph_started(record.namespace)
        task = asyncio.get_running_loop().create_task(run.run(), name=f"graph-{record.graph_id}")
        self._runs.add(task)
        task.add_done_callback(lambda done: self._ended(record.graph_id, done))
        return run

    def _ended(self, graph_id: str, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        run = self._live.pop(graph_id, None)
        if run is not None and self._metrics is not None:
            nodes = {k.removeprefix("NODE_STATUS_"): n for k, n in counts(run.nodes).items()}
            self._metrics.graph_ended(run.record.namespace, run.record.status, nodes)

    async def cancel(self, principal: Principal, graph_id: str) -> GraphRecord:
        """Stop a running graph: at once if this process runs it, else by a request to the
        replica that does; an ended one is returned as it is."""
        record, _ = await asyncio.to_thread(self.get, principal, graph_id)
        run = self._live.get(graph_id)
        if run is None:
            if record.status == "RUNNING" and self._tasks.replicas.alive(record.owner):
                await asyncio.to_thread(self._tasks.replicas.request_cancel, graph_id)
            return record
        self.stop(graph_id)
        await run.finished.wait()
        return run.record

    def stop(self, graph_id: str) -> bool:
        """Cancel the graph if this process runs it; False if it does not."""
        run = self._live.get(graph_id)
        if run is None:
            return False
        run.stop(
            Stop("CANCELLED", R.Name(R.ERROR_REASON_TASK_CANCELLED), "cancelled by the caller")
        )
        return True

    def running(self) -> tuple[str, ...]:
        """The ids of the graphs this process runs."""
        return tuple(self._live)

    async def retry(self, principal: Principal, graph_id: str) -> GraphRun:
        """Run an ended graph's unsucceeded nodes (and their descendants) again."""
        principal.require("run")
        record, nodes = await asyncio.to_thread(self.get, principal, graph_id)
        if record.status == "RUNNING":
            raise _not_retryable(graph_id, "the graph is still running")
        stored = await asyncio.to_thread(self._stored_task_ids, nodes)
        if not _reset(nodes, stored):
            raise _not_retryable(graph_id, "every node succeeded and its result is still stored")
        record = dataclasses.replace(
            record, status="RUNNING", owner=OWNER, token_id=principal.token_id,
            finished_at=None, error_reason="", error_message="", retries=record.retries + 1,
        )  # fmt: skip
        request = gpb.SubmitGraphRequest.FromString(record.spec)
        return await self._start(record, request, nodes, principal)

    def _stored_task_ids(self, nodes: dict[str, NodeState]) -> set[str]:
        """The succeeded nodes whose stored results are still there."""
        found = set()
        for node in nodes.values():
            if node.status == "SUCCEEDED" and node.task_id:
                task = self._writer.pending_task(node.task_id) or self._store.task(node.task_id)
                if task is not None and is_stored(self._tasks.settings.storage, task):
                    found.add(node.task_id)
        return found

    async def drain(self, grace: float) -> None:
        """Let running graphs finish for ``grace`` seconds, then stop them (failed, with a
        reason; RetryGraph runs the rest later)."""
        runs = list(self._runs)
        if runs:
            await asyncio.wait(runs, timeout=grace)
        message = "the server shut down before the graph finished; RetryGraph runs the rest"
        for run in list(self._live.values()):
            run.stop(Stop("FAILED", R.Name(R.ERROR_REASON_SHUTTING_DOWN), message))
        if self._runs:
            await asyncio.wait(list(self._runs))

    def recover(self) -> int:
        """Fail the unfinished graphs of server processes that are gone; return how many."""
        unfinished = self._store.unfinished_graphs()
        self._tasks.replicas.refresh()  # after the read, as in Tasks.recover
        orphans = [g for g in unfinished if not self._tasks.replicas.alive(g.owner)]
        for record in orphans:
            self._store.save_graphs([_restarted(record)])
        return len(orphans)

    def forget(self, ended_before: float) -> int:
        return self._store.forget_graphs(ended_before)

    # queries

    def get(self, principal: Principal, graph_id: str) -> tuple[GraphRecord, dict[str, NodeState]]:
        """The graph and its nodes, if the caller may see it (blocking when not live)."""
        run = self._live.get(graph_id)
        record = run.record if run else self._writer.pending_graph(graph_id)
        record = record or self._store.graph(graph_id)
        if record is None or not principal.member_of(record.namespace):
            raise ServiceError(
                R.ERROR_REASON_GRAPH_NOT_FOUND,
                f"no graph {graph_id[:64]!r} is visible to you",
                graph_id=graph_id[:64],
            )
        return record, run.nodes if run else load_nodes(record.nodes)

    def list(self, principal: Principal, query: GraphQuery) -> list[GraphRecord]:
        foreign = query.namespaces is not None and not query.namespaces <= principal.namespaces
        if foreign and not principal.admin:
            return []
        for run in list(self._live.values()):
            run.save_now()  # listings show the counts as they are
        self._writer.flush()
        return self._store.graphs(query)

    async def watch(self, principal: Principal, graph_id: str) -> AsyncIterator[gpb.GraphEvent]:
        """Every node's state now, then each change, then the graph's end."""
        async for batch in self.watch_batches(principal, graph_id):
            for event in batch:
                yield event

    async def watch_batches(self, principal: Principal, graph_id: str) -> AsyncIterator[Events]:
        """``watch``'s events, each batch every event waiting when it was taken."""
        record, nodes = await asyncio.to_thread(self.get, principal, graph_id)
        run = self._live.get(graph_id)
        if run is not None and not run.finished.is_set():
            queue = run.watch()
            try:
                while True:
                    batch = [await queue.get()]
                    while not queue.empty():
                        batch.append(queue.get_nowait())
                    events = [event for event in batch if event is not None]
                    if events:
                        yield events
                    if batch[-1] is None:  # the run's last word: nothing follows it
                        return
            finally:
                run.unwatch(queue)
        async for events in self._watch_stored(principal, record, nodes):
            yield events

    async def _watch_stored(
        self, principal: Principal, record: GraphRecord, nodes: dict[str, NodeState]
    ) -> AsyncIterator[Events]:
        """Watch a graph from the store (ended, or run by another server process): a batch
        per look."""
        sent: dict[str, tuple[str, int, str]] = {}
        while True:
            changed = []
            for node in nodes.values():
                seen = (node.status, node.attempts, node.task_id)
                if sent.get(node.id) != seen:
                    sent[node.id] = seen
                    changed.append(
                        _event(record.graph_id, node.message(), gpb.NODE_EVENT_KIND_STATE)
                    )
            if changed:
                yield changed
            if record.status != "RUNNING":
                break
            await asyncio.sleep(POLL_SECONDS)
            if not self._tasks.replicas.alive(record.owner):
                await asyncio.to_thread(self.recover)
            record, nodes = await asyncio.to_thread(self.get, principal, record.graph_id)
        final = gpb.GraphEvent(
            graph_id=record.graph_id,
            graph_status=f"GRAPH_STATUS_{record.status}",
            time=timestamp(time.time()),
        )
        yield [final]


def _event(graph_id: str, node: gpb.GraphNode, kind: Any) -> gpb.GraphEvent:
    return gpb.GraphEvent(graph_id=graph_id, node=node, kind=kind, time=timestamp(time.time()))


def _without_references(call: pb.ExecuteUdfRequest) -> pb.ExecuteUdfRequest:
    """A node's request with its node references as empty stored results, for checking."""
    copy = pb.ExecuteUdfRequest()
    copy.CopyFrom(call)
    pending = [*copy.args, *copy.kwargs.values()]
    while pending:
        arg = pending.pop()
        kind = arg.WhichOneof("kind")
        if kind == "node":
            arg.stored_result = ""
        elif kind == "list":
            pending += arg.list.items
        elif kind == "map":
            pending += [entry.value for entry in arg.map.entries]
    return copy


def _reset(nodes: dict[str, NodeState], stored: set[str]) -> list[NodeState]:
    """Reset the nodes that must run again: those that did not succeed or lost their stored
    result, and their descendants; return them. A mapped node keeps the instances that
    succeeded unless its parent runs again."""
    again: set[str] = set()
    for node in list(nodes.values()):
        if node.item is not None:
            continue
        parents_again = any(p in again for p in node.parents)
        if node.instances is not None:
            instances = [nodes[i] for i in node.instances]
            lost = [i for i in instances if i.status != "SUCCEEDED" or i.task_id not in stored]
            if not (lost or parents_again or node.status != "SUCCEEDED"):
                continue
            if parents_again:
                for instance in instances:
                    del nodes[instance.id]
                node.instances = None
            else:
                for instance in lost:
                    instance.reset()
        elif node.status == "SUCCEEDED" and node.task_id in stored and not parents_again:
            continue
        again.add(node.id)
        node.reset()
    return [nodes[node_id] for node_id in again]


def _restarted(record: GraphRecord) -> GraphRecord:
    """A graph whose server process is gone: FAILED, its unfinished nodes too."""
    nodes = load_nodes(record.nodes)
    reason = R.Name(R.ERROR_REASON_SERVER_RESTARTED)
    message = "the server running this graph stopped before it finished; RetryGraph runs the rest"
    now = time.time()
    for node in nodes.values():
        if node.status not in ENDED:
            running = node.status == "RUNNING" and node.instances is None
            node.status = "FAILED" if running else "CANCELLED"
            node.error_reason, node.error_message, node.finished_at = reason, message, now
    return dataclasses.replace(
        record, status="FAILED", finished_at=now, error_reason=reason, error_message=message,
        nodes=dump_nodes(nodes), counts=json.dumps(counts(nodes)),
    )  # fmt: skip


def _not_retryable(graph_id: str, why: str) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_GRAPH_NOT_RETRYABLE, f"graph {graph_id} cannot be retried: {why}",
        graph_id=graph_id,
    )  # fmt: skip
