"""Check a SubmitGraphRequest before anything runs: ids, references, cycles, sizes, retry
policies. The UDFs and arguments themselves are checked by ``plan_execution`` (the graph
service plans every node once at submission, with its references left empty)."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_pb2

from ._status import R, ServiceError

#: Nodes a graph may hold, mapped nodes' instances included.
MAX_NODES = 10_000
MAX_ATTEMPTS = 10
NODE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_DEADLINE = 24 * 3600.0


@dataclass(frozen=True)
class Retry:
    """A node's retry policy, checked."""

    attempts: int = 1
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (from 1)."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class NodePlan:
    """One node of the request, with the ids of the nodes it waits for."""

    index: int
    id: str
    name: str
    parents: tuple[str, ...]
    map_over: str
    retry: Retry


def plan_graph(request: gpb.SubmitGraphRequest) -> list[NodePlan]:
    """The request's nodes in an order where every node comes after its parents; raises
    GRAPH_INVALID naming the node for anything wrong."""
    if not request.nodes:
        raise _invalid("", "the graph has no nodes")
    if len(request.nodes) > MAX_NODES:
        raise _invalid("", f"the graph has {len(request.nodes)} nodes; at most {MAX_NODES}")
    ids = [node.id for node in request.nodes]
    known: set[str] = set()
    for node_id in ids:
        if not NODE_ID.fullmatch(node_id):
            raise _invalid(node_id[:128], "node ids are 1 to 128 letters, digits or '_.:-'")
        if node_id in known:
            raise _invalid(node_id, f"two nodes have the id {node_id!r}")
        known.add(node_id)
    plans = [_node(i, node, known) for i, node in enumerate(request.nodes)]
    return _ordered(plans)


def _node(index: int, node: gpb.GraphNodeSpec, known: set[str]) -> NodePlan:
    refs = set(node_refs(node.call.args)) | set(node_refs(node.call.kwargs.values()))
    parents = refs | set(node.depends_on)
    if node.map_over:
        parents.add(node.map_over)
    for parent in sorted(parents):
        if parent not in known:
            raise _invalid(node.id, f"node {node.id!r} refers to {parent[:128]!r}, no node's id")
        if parent == node.id:
            raise _invalid(node.id, f"node {node.id!r} refers to itself")
    order = [p for p in dict.fromkeys([*sorted(refs), *node.depends_on, node.map_over]) if p]
    return NodePlan(index, node.id, node.name or node.id, tuple(order), node.map_over, _retry(node))


def _retry(node: gpb.GraphNodeSpec) -> Retry:
    policy = node.retry
    attempts = policy.attempts or 1
    if attempts > MAX_ATTEMPTS:
        raise _invalid(node.id, f"node {node.id!r}: retry.attempts may be at most {MAX_ATTEMPTS}")
    backoff = policy.backoff.ToNanoseconds() / 1e9 if policy.HasField("backoff") else None
    longest = policy.max_backoff.ToNanoseconds() / 1e9 if policy.HasField("max_backoff") else None
    if (backoff or 0) < 0 or (longest or 0) < 0:
        raise _invalid(node.id, f"node {node.id!r}: retry backoffs cannot be negative")
    return Retry(
        attempts,
        DEFAULT_BACKOFF if backoff is None else backoff,
        DEFAULT_MAX_BACKOFF if longest is None else longest,
    )


def _ordered(plans: list[NodePlan]) -> list[NodePlan]:
    """Kahn's algorithm; a node left over sits on a cycle."""
    by_id = {plan.id: plan for plan in plans}
    waiting = {plan.id: len(plan.parents) for plan in plans}
    children: dict[str, list[str]] = {plan.id: [] for plan in plans}
    for plan in plans:
        for parent in plan.parents:
            children[parent].append(plan.id)
    ready = [(plan.index, plan.id) for plan in plans if not plan.parents]
    ordered: list[NodePlan] = []
    while ready:  # the request's order among the nodes that are ready
        _, node_id = heapq.heappop(ready)
        ordered.append(by_id[node_id])
        for child in children[node_id]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (by_id[child].index, child))
    if len(ordered) < len(plans):
        stuck = sorted(node_id for node_id, count in waiting.items() if count)
        raise _invalid(stuck[0], f"the nodes {', '.join(stuck[:5])} form a cycle")
    return ordered


def node_refs(args: object) -> Iterator[str]:
    """The node ids referenced by some Arguments, nested ones included."""
    pending = list(args)  # type: ignore[call-overload]
    while pending:
        arg: udf_pb2.Argument = pending.pop()
        kind = arg.WhichOneof("kind")
        if kind == "node":
            yield arg.node
        elif kind == "list":
            pending += arg.list.items
        elif kind == "map":
            pending += [entry.value for entry in arg.map.entries]


def _invalid(node: str, message: str) -> ServiceError:
    return ServiceError(R.ERROR_REASON_GRAPH_INVALID, message, node=node)
