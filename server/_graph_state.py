"""The state of a graph's nodes: kept in memory by the run, stored as JSON, sent as protobuf."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field

from tilefn.v1 import graph_service_pb2 as gpb

from ._store import GraphRecord
from ._times import timestamp

#: Node states after which nothing more happens to the node (until RetryGraph).
ENDED = frozenset({"SUCCEEDED", "FAILED", "PARENT_FAILED", "CANCELLED"})
#: Graph states after which its run is over.
GRAPH_ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass
class NodeState:
    """One node (or one instance of a mapped node) as it is now."""

    id: str
    name: str
    #: The node's index in the SubmitGraphRequest (an instance: its mapped node's).
    spec: int
    parents: list[str]
    status: str = "WAITING"
    task_id: str = ""
    attempts: int = 0
    result_bytes: int = 0
    #: How many items its output has, when it has them (what a mapped child runs over).
    items: int | None = None
    #: A mapped node: its instances' ids, once its parent's output is known.
    instances: list[str] | None = None
    #: An instance of a mapped node: which item it runs on.
    item: int | None = None
    error_reason: str = ""
    error_message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    #: The node this one maps over ("" when not mapped).
    map_over: str = ""
    children: list[str] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def reset(self) -> None:
        """Back to WAITING, to run again (RetryGraph)."""
        self.status, self.task_id, self.attempts, self.result_bytes = "WAITING", "", 0, 0
        self.items, self.error_reason, self.error_message = None, "", ""
        self.started_at = self.finished_at = None

    def message(self) -> gpb.GraphNode:
        return gpb.GraphNode(
            id=self.id,
            name=self.name,
            status=f"NODE_STATUS_{self.status}",
            parents=self.parents,
            task_id=self.task_id,
            attempts=self.attempts,
            result_bytes=self.result_bytes,
            instances=len(self.instances or ()),
            error_reason=self.error_reason,
            error_message=self.error_message,
            started_at=timestamp(self.started_at),
            finished_at=timestamp(self.finished_at),
        )


_STORED = [f.name for f in dataclasses.fields(NodeState) if f.name != "children"]


def dump_nodes(nodes: dict[str, NodeState]) -> str:
    """The nodes as JSON (children are derived again on loading)."""
    return json.dumps([[getattr(node, name) for name in _STORED] for node in nodes.values()])


def load_nodes(text: str) -> dict[str, NodeState]:
    """Inverse of :func:`dump_nodes`."""
    nodes = {row[0]: NodeState(**dict(zip(_STORED, row, strict=True))) for row in json.loads(text)}
    link_children(nodes)
    return nodes


def link_children(nodes: dict[str, NodeState]) -> None:
    """Fill in each node's children from the others' parents (in node order)."""
    for node in nodes.values():
        node.children = []
    for node in nodes.values():
        for parent in node.parents:
            if parent in nodes and node.item is None:  # instances hang off their mapped node
                nodes[parent].children.append(node.id)


def counts(nodes: dict[str, NodeState]) -> dict[str, int]:
    """How many nodes are in each state, by NodeStatus name; a mapped node counts as its
    instances once it has them."""
    found = Counter(
        f"NODE_STATUS_{node.status}" for node in nodes.values() if node.instances is None
    )
    return dict(sorted(found.items()))


def graph_message(record: GraphRecord, nodes: dict[str, NodeState] | None) -> gpb.Graph:
    """The Graph message; ``nodes`` None leaves them out (listings)."""
    graph = gpb.Graph(
        graph_id=record.graph_id,
        name=record.name,
        namespace=record.namespace,
        status=f"GRAPH_STATUS_{record.status}",
        error_reason=record.error_reason,
        error_message=record.error_message,
        retries=record.retries,
        node_counts=json.loads(record.counts),
        created_at=timestamp(record.created_at),
        finished_at=timestamp(record.finished_at),
    )
    if nodes is not None:
        graph.nodes.extend(node.message() for node in in_order(nodes))
    return graph


def in_order(nodes: dict[str, NodeState]) -> list[NodeState]:
    """The nodes in dependency order, each mapped node followed by its instances."""
    ordered = []
    for node in nodes.values():
        if node.item is None:
            ordered.append(node)
            ordered += [nodes[i] for i in node.instances or ()]
    return ordered
