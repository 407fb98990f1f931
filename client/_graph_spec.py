"""Graph nodes as the client builds them: ids, references to other nodes (anywhere inside
lists, tuples and dicts), retry policies, the dependency order and the SubmitGraphRequest.

Nothing here talks to a server; ``_graph`` holds the handles users see.
"""

from __future__ import annotations

import collections
import functools
import heapq
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_pb2, udf_service_pb2

from ._arrays import ArrayRead
from ._request import REGISTERED_NAME, Registered, Source, Udf, encode_argument

#: What the server accepts as a node id.
NODE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
#: Generated ids keep room for "-<counter>" and an instance's "[<item>]" within 128.
MAX_BASE = 96
#: Seconds, or a timedelta.
Seconds = float | timedelta


class NodeRef:
    """What encoding needs of a node handle: its id, the graph it belongs to, and whether it
    is one instance of a mapped node (those cannot be referenced: reference the mapped node)."""

    id: str
    _graph: object
    _instance: bool


@dataclass(frozen=True)
class Retry:
    """How often to try a node that fails (its UDF raised, timed out, ran out of memory or
    CPU, or its worker died), and how long to wait in between."""

    #: Attempts in all, the first included (the server allows at most 10).
    attempts: int
    #: Seconds before the second attempt, doubling for each further one; None: 1 s.
    backoff: Seconds | None = None
    #: The longest wait between attempts; None: 60 s.
    max_backoff: Seconds | None = None

    def to_proto(self) -> gpb.RetryPolicy:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, not {self.attempts}")
        policy = gpb.RetryPolicy(attempts=self.attempts)
        if self.backoff is not None:
            policy.backoff.CopyFrom(duration(self.backoff))
        if self.max_backoff is not None:
            policy.max_backoff.CopyFrom(duration(self.max_backoff))
        return policy


def retry_policy(retry: Retry | int | None) -> gpb.RetryPolicy | None:
    """``retry=3`` is ``Retry(3)``: three attempts with the server's default backoff."""
    if retry is None:
        return None
    if isinstance(retry, bool) or not isinstance(retry, int | Retry):
        raise TypeError(f"retry must be an int or a Retry, not {type(retry).__name__}")
    return (Retry(retry) if isinstance(retry, int) else retry).to_proto()


def duration(value: Seconds) -> duration_pb2.Duration:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds} s")
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


def graph_options(
    parallelism: int, fail_fast: bool, deadline: Seconds | None, result_ttl: Seconds | None
) -> gpb.GraphOptions:
    options = gpb.GraphOptions(parallelism=parallelism, fail_fast=fail_fast)
    if deadline is not None:
        options.deadline.CopyFrom(duration(deadline))
    if result_ttl is not None:
        options.result_ttl.CopyFrom(duration(result_ttl))
    return options


# ---------------------------------------------------------------- arguments


def encode_value(value: Any, graph: object) -> udf_pb2.Argument:
    """One argument that may hold nodes of ``graph``.

    A node becomes a reference (``Argument.node``); a list, tuple or dict (string keys)
    holding nodes becomes a nested ``Argument.list`` / ``Argument.map`` whose items are
    encoded the same way, so the UDF receives a list (tuples too) or a dict; a value without
    nodes is encoded exactly as ``Client.exec`` encodes it.
    """
    if isinstance(value, NodeRef):
        return udf_pb2.Argument(node=_reference(value, graph))
    if next(referenced(value), None) is None:
        return encode_argument(value)
    if isinstance(value, list | tuple):
        items = [_encode_item(item, graph) for item in value]
        return udf_pb2.Argument(list=udf_pb2.ArgumentList(items=items))
    entries = [
        udf_pb2.ArgumentEntry(key=_key(key), value=_encode_item(item, graph))
        for key, item in value.items()
    ]
    return udf_pb2.Argument(map=udf_pb2.ArgumentMap(entries=entries))


def _encode_item(value: Any, graph: object) -> udf_pb2.Argument:
    if isinstance(value, ArrayRead):  # the server reads arrays only as top-level arguments
        raise TypeError("an ArrayRead cannot share a list or dict with node references")
    return encode_value(value, graph)


def _reference(node: NodeRef, graph: object) -> str:
    if node._graph is not graph:
        raise ValueError(f"node {node.id!r} belongs to another graph")
    if node._instance:
        raise ValueError(f"{node.id!r} is one instance of a mapped node: reference the node")
    return node.id


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a dict holding nodes needs string keys, not {type(key).__name__}")
    return key


def referenced(value: Any) -> Iterator[NodeRef]:
    """The nodes inside a value (itself, or anywhere in its lists, tuples and dict values),
    in order."""
    pending, seen = [value], set()
    while pending:
        item = pending.pop()
        if isinstance(item, NodeRef):
            yield item
        elif isinstance(item, list | tuple | dict) and id(item) not in seen:
            seen.add(id(item))  # a list that holds itself is walked once
            members = item.values() if isinstance(item, dict) else item
            pending.extend(reversed(list(members)))


def encode_call(
    call: udf_service_pb2.ExecuteUdfRequest,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    graph: object,
) -> tuple[str, ...]:
    """Add the arguments to a node's request; return the ids it references, in order."""
    call.args.extend(encode_value(a, graph) for a in args)
    for name, value in kwargs.items():
        call.kwargs[name].CopyFrom(encode_value(value, graph))
    refs = [node.id for value in (*args, *kwargs.values()) for node in referenced(value)]
    return tuple(dict.fromkeys(refs))


# ---------------------------------------------------------------- ids


def base_name(fn: Udf) -> str:
    """A node id stem from what a node runs: the function's name, a registered UDF's short
    name, a source's entry point (or its first function)."""
    if isinstance(fn, str) and REGISTERED_NAME.match(fn):
        fn = Registered(fn)
    elif isinstance(fn, str):
        fn = Source(fn)
    if isinstance(fn, Registered):
        name = fn.name.rpartition("/")[2].partition("@")[0]
    elif isinstance(fn, Source):
        found = re.search(r"^def\s+(\w+)", fn.text, re.M)
        name = fn.entry_point or (found.group(1) if found else "source")
    else:
        inner = fn.func if isinstance(fn, functools.partial) else fn
        name = getattr(inner, "__name__", "") or type(inner).__name__
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", name).strip("_")[:MAX_BASE] or "node"


class NodeIds:
    """Unique node ids of one graph: given ones are checked, others are ``<stem>-<n>``."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._next: collections.Counter[str] = collections.Counter()

    def claim(self, node_id: str) -> str:
        if not NODE_ID.match(node_id):
            raise ValueError(f"a node id is 1 to 128 letters, digits or '_.:-', not {node_id!r}")
        if node_id in self._taken:
            raise ValueError(f"the graph has a node {node_id!r} already")
        self._taken.add(node_id)
        return node_id

    def generate(self, stem: str) -> str:
        while f"{stem}-{self._next[stem]}" in self._taken:  # skip ids given by hand
            self._next[stem] += 1
        node_id = f"{stem}-{self._next[stem]}"
        self._next[stem] += 1
        return self.claim(node_id)


# ---------------------------------------------------------------- nodes and order


@dataclass
class NodeSpec:
    """One node as built: its request, and what it waits for and why."""

    id: str
    call: udf_service_pb2.ExecuteUdfRequest
    #: Nodes its arguments reference, in order.
    refs: tuple[str, ...] = ()
    #: Nodes it waits for without using their output.
    depends_on: list[str] = field(default_factory=list)
    #: The node it is mapped over ("" when it is not mapped).
    map_over: str = ""
    retry: gpb.RetryPolicy | None = None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in dict.fromkeys([*self.refs, *self.depends_on, self.map_over]) if p)

    def edge_kind(self, parent: str) -> str:
        """How this node uses ``parent``: "map", "data" or "order" (for drawings)."""
        if parent == self.map_over:
            return "map"
        return "data" if parent in self.refs else "order"

    def to_proto(self) -> gpb.GraphNodeSpec:
        spec = gpb.GraphNodeSpec(
            id=self.id, call=self.call, depends_on=self.depends_on, map_over=self.map_over
        )
        if self.retry is not None:
            spec.retry.CopyFrom(self.retry)
        return spec


def ordered(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The ids with every node after its parents (ties keep the given order); a ValueError
    names the nodes of a cycle."""
    index = {node_id: i for i, node_id in enumerate(parents)}
    waiting = {node_id: len(set(ps)) for node_id, ps in parents.items()}
    children: dict[str, list[str]] = {node_id: [] for node_id in parents}
    for node_id, ps in parents.items():
        for parent in set(ps):
            if parent not in children:
                raise ValueError(f"node {node_id!r} waits for {parent!r}, not in the graph")
            children[parent].append(node_id)
    ready = [(index[n], n) for n, count in waiting.items() if not count]
    heapq.heapify(ready)
    found: list[str] = []
    while ready:
        _, node_id = heapq.heappop(ready)
        found.append(node_id)
        for child in children[node_id]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (index[child], child))
    if len(found) < len(parents):
        stuck = sorted(n for n, count in waiting.items() if count)
        raise ValueError(f"the nodes {', '.join(stuck[:5])} wait for each other (a cycle)")
    return found


def submit_request(
    name: str, specs: Mapping[str, NodeSpec], options: gpb.GraphOptions
) -> gpb.SubmitGraphRequest:
    """The request for the whole graph, its nodes in dependency order."""
    order = ordered({node_id: spec.parents for node_id, spec in specs.items()})
    return gpb.SubmitGraphRequest(
        name=name, nodes=[specs[node_id].to_proto() for node_id in order], options=options
    )
