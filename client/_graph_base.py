"""What the sync and asyncio graphs share: building nodes (``submit``, ``apply``, ``map``),
node handles and their last known state, and pictures (``to_dot``, ``render``).

::

    g.submit / g.apply / g.map ──▶ NodeSpec (request built and pickled at once)
                                      │ run()
                                      ▼
    SubmitGraph ──▶ Graph message ──▶ GraphState ◀── WatchGraph events (run, wait, result)
                                      │
                                      ▼
                        Node handles read their NodeInfo from it
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from tilefn.v1 import graph_service_pb2 as gpb

from ._arrays import ArrayRead
from ._graph_progress import Progress, wanted
from ._graph_render import Box, to_dot, to_svg
from ._graph_spec import (
    NodeIds,
    NodeRef,
    NodeSpec,
    Retry,
    base_name,
    encode_call,
    ordered,
    referenced,
    retry_policy,
    submit_request,
)
from ._graph_state import (
    INSTANCE_ID,
    NODE_ENDED,
    PENDING,
    GraphInfo,
    GraphState,
    NodeFailedError,
    NodeInfo,
)
from ._request import Options, Udf, build_request

N = TypeVar("N", bound="NodeBase")


class NodeBase(NodeRef):
    """A node of a graph: pass it as an argument of later nodes to use its output there."""

    _graph: GraphBase[Any]

    def __init__(self, graph: GraphBase[Any], node_id: str, *, instance: bool = False) -> None:
        self._graph = graph
        self.id = node_id
        self._instance = instance

    @property
    def info(self) -> NodeInfo:
        """The node as last reported (the graph's ``run``, ``wait``, ``refresh`` update it)."""
        return self._graph._state.nodes[self.id]

    @property
    def status(self) -> str:
        """PENDING before the graph runs, then WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED,
        PARENT_FAILED or CANCELLED."""
        return self.info.status

    @property
    def task_id(self) -> str:
        """The task of the node's latest attempt ("" before it ran, and for a mapped node)."""
        return self.info.task_id

    @property
    def attempts(self) -> int:
        return self.info.attempts

    @property
    def error(self) -> NodeFailedError | None:
        """What ``result()`` raises, once the node ended without succeeding; else None."""
        info = self.info
        if info.status in NODE_ENDED and info.status != "SUCCEEDED":
            return NodeFailedError(info, self._graph.graph_id)
        return None

    @property
    def mapped(self) -> bool:
        """True for a node mapped over another one (``Graph.map``): it runs as instances."""
        spec = self._graph._specs.get(self.id)
        if spec is not None:
            return bool(spec.map_over)
        info = self.info  # attached graphs: only a mapped node succeeds without a task
        return info.instances > 0 or (info.status == "SUCCEEDED" and not info.task_id)

    @property
    def instances(self) -> list[Self]:
        """A mapped node's instances, ``<id>[0]``, ``<id>[1]``, ..., once they exist."""
        return [self._graph[i] for i in self._graph._state.instances(self.id)]

    def depends_on(self, *nodes: NodeBase) -> Self:
        """Run this node only after ``nodes`` succeeded, without using their outputs."""
        self._graph._depend(self, nodes)
        return self

    def _task(self) -> str:
        """The task whose logs or result this node has."""
        self._graph._require_submitted()
        if self.mapped:
            raise ValueError(f"{self.id!r} is a mapped node: see its instances' tasks")
        if not self.info.task_id:
            raise ValueError(f"node {self.id!r} has not run ({self.info.status})")
        return self.info.task_id

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            f"node {self.id!r} can be an argument of its graph's nodes (also inside lists, "
            "tuples and dicts), not part of another value"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, status={self.status!r})"


class GraphBase(Generic[N]):
    """See the module docstring; ``Graph`` and ``AsyncGraph`` add running and waiting."""

    _node_type: type[N]

    def __init__(
        self,
        client: Any,
        name: str = "",
        *,
        options: gpb.GraphOptions | None = None,
    ) -> None:
        self._client = client
        self.name = name
        self._options = options or gpb.GraphOptions()
        self._specs: dict[str, NodeSpec] = {}
        self._ids = NodeIds()
        self._state = GraphState()
        self._handles: dict[str, N] = {}

    # what is known

    @property
    def graph_id(self) -> str:
        """The server's id for the graph; "" before it runs."""
        return "" if self._state.info is None else self._state.info.graph_id

    @property
    def info(self) -> GraphInfo | None:
        """The graph's record as last reported; None before it runs."""
        return self._state.info

    @property
    def nodes(self) -> list[N]:
        """The nodes (a mapped node's instances are its ``instances``)."""
        return [self[i] for i in self._state.nodes if not INSTANCE_ID.match(i)]

    def __getitem__(self, node_id: str) -> N:
        """The node (or instance, "<id>[<i>]") with this id."""
        if node_id not in self._state.nodes:
            raise KeyError(node_id)
        if node_id not in self._handles:
            instance = INSTANCE_ID.match(node_id) is not None
            self._handles[node_id] = self._node_type(self, node_id, instance=instance)
        return self._handles[node_id]

    # building

    def submit(
        self,
        fn: Udf,
        /,
        *args: Any,
        name: str | None = None,
        depends_on: Iterable[NodeBase] = (),
        retry: Retry | int | None = None,
        options: Options | None = None,
        **kwargs: Any,
    ) -> N:
        """Add a node running ``fn(*args, **kwargs)``; nodes among the arguments (also inside
        lists, tuples and dicts) are replaced by their outputs on the server.

        ``fn`` is any UDF form ``Client.exec`` takes. ``name`` is the node's id (default: the
        function's name and a counter); ``retry`` the attempts (or a ``Retry``); ``options``
        this node's execution options (default: the client's). These four keywords are not
        passed to ``fn``.
        """
        return self._add(
            fn, args, kwargs, name=name, depends_on=depends_on, retry=retry, options=options
        )

    def apply(
        self,
        array: str | ArrayRead,
        fn: Udf,
        /,
        *args: Any,
        ranges: Sequence[Any] | None = None,
        attrs: Sequence[str] = (),
        layout: str | None = None,
        condition: str | None = None,
        name: str | None = None,
        depends_on: Iterable[NodeBase] = (),
        retry: Retry | int | None = None,
        options: Options | None = None,
        **kwargs: Any,
    ) -> N:
        """Add a node running ``fn(data, *args, **kwargs)`` on a slice of ``array`` that the
        server reads (as ``Client.apply``); the other keywords are ``submit``'s."""
        read = array if isinstance(array, ArrayRead) else ArrayRead(
            array, ranges, tuple(attrs), layout, condition
        )  # fmt: skip
        return self._add(
            fn, args, kwargs, name=name, depends_on=depends_on, retry=retry, options=options,
            arrays=[read],
        )  # fmt: skip

    def map(
        self,
        fn: Udf,
        over: NodeBase,
        /,
        *args: Any,
        name: str | None = None,
        depends_on: Iterable[NodeBase] = (),
        retry: Retry | int | None = None,
        options: Options | None = None,
        **kwargs: Any,
    ) -> N:
        """Add a node running ``fn`` once per item of ``over``'s output (a list, tuple, dict's
        values, an array's rows, or a mapped node's outputs), as instances "<id>[<i>]".

        In each instance ``over`` is that one item: it is the first argument unless ``args``
        or ``kwargs`` place it elsewhere. Nodes using this node receive the list of the
        instances' outputs.
        """
        placed = any(n is over for v in (*args, *kwargs.values()) for n in referenced(v))
        args = args if placed else (over, *args)
        return self._add(
            fn, args, kwargs, name=name, depends_on=depends_on, retry=retry, options=options,
            map_over=over,
        )  # fmt: skip

    def _add(
        self,
        fn: Udf,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        name: str | None = None,
        depends_on: Iterable[NodeBase] = (),
        retry: Retry | int | None = None,
        options: Options | None = None,
        arrays: Sequence[ArrayRead] = (),
        map_over: NodeBase | None = None,
    ) -> N:
        self._require_building()
        after = [self._own(node) for node in (*depends_on, *([map_over] if map_over else []))]
        policy = retry_policy(retry)
        call = build_request(fn, (), {}, options or self._client.options, arrays)
        refs = encode_call(call, args, kwargs, self)
        spec = NodeSpec(  # the id is taken last: a node refused above leaves no id behind
            self._ids.claim(name) if name is not None else self._ids.generate(base_name(fn)),
            call,
            refs,
            depends_on=list(dict.fromkeys(n.id for n in after if n is not map_over)),
            map_over=map_over.id if map_over else "",
            retry=policy,
        )
        self._specs[spec.id] = spec
        self._state.nodes[spec.id] = NodeInfo(spec.id, spec.id, PENDING, spec.parents)
        return self[spec.id]

    def _depend(self, node: NodeBase, on: Iterable[NodeBase]) -> None:
        self._require_building()
        spec = self._specs[self._own(node).id]
        before = list(spec.depends_on)
        added = [self._own(n).id for n in on]
        spec.depends_on += [n for n in dict.fromkeys(added) if n not in spec.depends_on]
        try:
            ordered({node_id: s.parents for node_id, s in self._specs.items()})
        except ValueError:
            spec.depends_on = before
            raise
        self._state.nodes[spec.id] = NodeInfo(spec.id, spec.id, PENDING, spec.parents)

    def _own(self, node: NodeBase) -> NodeBase:
        if not isinstance(node, NodeBase) or node._graph is not self or node._instance:
            raise ValueError(f"{node!r} is not a node of this graph")
        return node

    def _require_building(self) -> None:
        if self.graph_id:
            raise RuntimeError("the graph was submitted: nodes cannot change (build a new one)")

    def _require_submitted(self) -> None:
        if not self.graph_id:
            raise RuntimeError("the graph has not been submitted: run() it first")

    def _submit_request(self) -> gpb.SubmitGraphRequest:
        if self.graph_id:
            raise RuntimeError("the graph was submitted already: retry() reruns what failed")
        return submit_request(self.name, self._specs, self._options)

    def _progress(self, progress: bool | None) -> Progress | None:
        label = f"graph {self.name or self.graph_id[:12]}"
        return Progress(label) if wanted(progress) else None

    # pictures

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph, nodes labelled with id and state and filled with
        the state's colour (a mapped node is one 3-D box)."""
        return to_dot(self.name, self._title(), self._boxes())

    def render(self, path: str | Path, *, use_dot: bool = False) -> Path:
        """Write an SVG picture of the graph and its nodes' states to ``path``.

        Drawn here (no Graphviz needed); ``use_dot=True`` has Graphviz's ``dot`` lay it out
        instead, in the format of ``path``'s suffix (svg, png, pdf...).
        """
        path = Path(path)
        if not use_dot:
            if path.suffix.lower() not in (".svg", ""):
                raise ValueError("without use_dot=True, only SVG can be drawn")
            path.write_text(to_svg(self._title(), self._boxes()))
            return path
        dot = shutil.which("dot")
        if dot is None:
            raise FileNotFoundError("Graphviz's dot is not on PATH (render without use_dot)")
        fmt = path.suffix.lstrip(".").lower() or "svg"
        command = [dot, f"-T{fmt}", "-o", str(path)]
        subprocess.run(command, input=self.to_dot(), text=True, check=True, timeout=60)
        return path

    def _title(self) -> str:
        name = self.name or "graph"
        return f"{name} ({self._state.status.lower()})"

    def _boxes(self) -> list[Box]:
        boxes = []
        for node in self.nodes:
            spec = self._specs.get(node.id)
            parents = spec.parents if spec else node.info.parents
            kinds = tuple((p, spec.edge_kind(p) if spec else "data") for p in parents)
            boxes.append(Box(node.id, node.status, self._detail(node), kinds, node.mapped))
        return boxes

    def _detail(self, node: NodeBase) -> str:
        info = node.info
        if node.mapped and info.instances:
            done = sum(self._state.nodes[i].ended for i in self._state.instances(node.id))
            return f"{done}/{info.instances} done"
        reason = info.error_reason.removeprefix("ERROR_REASON_")
        if info.ended and info.status not in ("SUCCEEDED", reason):
            return reason
        return f"attempt {info.attempts}" if info.attempts > 1 else ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, graph_id={self.graph_id!r}, "
            f"status={self._state.status!r}, nodes={len(self.nodes)})"
        )
