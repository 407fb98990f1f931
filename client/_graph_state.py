"""What the client knows of a submitted graph: its record (``GraphInfo``), its nodes
(``NodeInfo``), kept current from ``Graph`` messages and ``GraphEvent`` streams, and the error
a node that did not succeed raises (``NodeFailedError``)."""

from __future__ import annotations

import collections
import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from tilefn.v1 import graph_service_pb2 as gpb

from ._exceptions import TilefnError
from ._tasks import TaskFailedError

NODE_STATUS = {v: n.removeprefix("NODE_STATUS_") for n, v in gpb.NodeStatus.items()}
GRAPH_STATUS = {v: n.removeprefix("GRAPH_STATUS_") for n, v in gpb.GraphStatus.items()}
EVENT_KIND = {v: n.removeprefix("NODE_EVENT_KIND_") for n, v in gpb.NodeEventKind.items()}
#: A graph or node the client built but has not submitted yet.
PENDING = "PENDING"
#: Node states after which nothing more happens to the node (until a retry).
NODE_ENDED = frozenset({"SUCCEEDED", "FAILED", "PARENT_FAILED", "CANCELLED"})
GRAPH_ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
#: "<mapped node id>[<item>]": node ids cannot hold brackets, so this is always an instance.
INSTANCE_ID = re.compile(r"(?P<node>.+)\[(?P<item>\d+)\]\Z")


def _when(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class NodeInfo:
    """One node (or one instance of a mapped node) as the server last reported it."""

    id: str
    name: str
    #: PENDING (not submitted), WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, PARENT_FAILED or
    #: CANCELLED.
    status: str
    parents: tuple[str, ...]
    #: The task of its latest attempt (GetTask, logs, FetchResult); "" before it ran and for a
    #: mapped node, whose instances have the tasks.
    task_id: str = ""
    attempts: int = 0
    result_bytes: int = 0
    #: A mapped node's number of instances, once its parent's output is known.
    instances: int = 0
    error_reason: str = ""
    error_message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.status in NODE_ENDED

    @classmethod
    def from_proto(cls, node: gpb.GraphNode) -> NodeInfo:
        return cls(
            id=node.id,
            name=node.name,
            status=NODE_STATUS[node.status],
            parents=tuple(node.parents),
            task_id=node.task_id,
            attempts=node.attempts,
            result_bytes=node.result_bytes,
            instances=node.instances,
            error_reason=node.error_reason,
            error_message=node.error_message,
            started_at=_when(node, "started_at"),
            finished_at=_when(node, "finished_at"),
        )


@dataclass(frozen=True)
class GraphInfo:
    """A graph's record, as ``Client.graphs`` lists it."""

    graph_id: str
    name: str
    namespace: str
    #: RUNNING, SUCCEEDED, FAILED or CANCELLED.
    status: str
    created_at: datetime | None
    finished_at: datetime | None
    error_reason: str
    error_message: str
    #: How many nodes are in each state, e.g. {"SUCCEEDED": 3, "RUNNING": 1} (a mapped node
    #: counts as its instances once it has them).
    node_counts: dict[str, int]
    #: How many times it was retried.
    retries: int

    @property
    def done(self) -> bool:
        return self.status in GRAPH_ENDED

    @classmethod
    def from_proto(cls, graph: gpb.Graph) -> GraphInfo:
        return cls(
            graph_id=graph.graph_id,
            name=graph.name,
            namespace=graph.namespace,
            status=GRAPH_STATUS[graph.status],
            created_at=_when(graph, "created_at"),
            finished_at=_when(graph, "finished_at"),
            error_reason=graph.error_reason,
            error_message=graph.error_message,
            node_counts={k.removeprefix("NODE_STATUS_"): v for k, v in graph.node_counts.items()},
            retries=graph.retries,
        )


@dataclass(frozen=True)
class GraphEvent:
    """One change in a watched graph (``Graph.watch``)."""

    #: STATE (a node as it is when the watch starts), QUEUED, RUNNING, SUCCEEDED, FAILED,
    #: RETRIED, PARENT_FAILED, CANCELLED, EXPANDED; "" for the graph's final event.
    kind: str
    #: The node after the change; None in the final event.
    node: NodeInfo | None
    #: How the graph ended, in the final event; "" before.
    graph_status: str
    time: datetime | None

    @classmethod
    def from_proto(cls, event: gpb.GraphEvent) -> GraphEvent:
        node = NodeInfo.from_proto(event.node) if event.HasField("node") else None
        status = GRAPH_STATUS[event.graph_status] if event.graph_status else ""
        kind = EVENT_KIND[event.kind] if event.kind else ""
        return cls(kind, node, status, _when(event, "time"))


class NodeFailedError(TaskFailedError):
    """A graph node ended FAILED, PARENT_FAILED or CANCELLED; ``node`` says how (``reason``
    is the server's, e.g. ERROR_REASON_UDF_RAISED or ERROR_REASON_PARENT_FAILED). ``task`` is
    None: a node's tasks are its attempts (``node.task_id`` is the last one, if it ran)."""

    def __init__(self, node: NodeInfo, graph_id: str) -> None:
        detail = node.error_message or node.error_reason or "no reason given"
        TilefnError.__init__(
            self,
            f"node {node.id!r} of graph {graph_id} {node.status}: {detail}",
            reason=node.error_reason,
            task_id=node.task_id,
        )
        self.task = None
        self.node = node
        self.graph_id = graph_id


class GraphState:
    """The nodes of one graph by id (instances included), in the server's order."""

    def __init__(self) -> None:
        self.info: GraphInfo | None = None
        self.nodes: dict[str, NodeInfo] = {}

    def load(self, graph: gpb.Graph) -> None:
        """Take a whole Graph message (SubmitGraph, GetGraph, CancelGraph, RetryGraph): its
        nodes replace ours, since a retry may drop a mapped node's instances."""
        self.info = GraphInfo.from_proto(graph)
        if graph.nodes:
            self.nodes = {node.id: NodeInfo.from_proto(node) for node in graph.nodes}

    def apply(self, event: GraphEvent) -> bool:
        """Take one event; True once it is the graph's last."""
        if event.node is not None:
            self.nodes[event.node.id] = event.node
        if not event.graph_status:
            return False
        if self.info is not None:
            self.info = dataclasses.replace(self.info, status=event.graph_status)
        return True

    @property
    def status(self) -> str:
        return PENDING if self.info is None else self.info.status

    def instances(self, node_id: str) -> list[str]:
        """A mapped node's instance ids, in item order."""
        count = self.nodes[node_id].instances if node_id in self.nodes else 0
        return [f"{node_id}[{i}]" for i in range(count)]

    def counts(self) -> collections.Counter[str]:
        """Nodes per state, each mapped node counted as its instances once it has them."""
        return collections.Counter(
            node.status for node in self.nodes.values() if not node.instances
        )
