"""``delayed``: write a graph as ordinary calls (as with Dask's ``dask.delayed``).

    @delayed
    def load(i): ...
    @delayed
    def total(parts): return sum(parts)

    result = total([load(i) for i in range(4)]).compute(client)

A call of a delayed function runs nothing: it returns a :class:`Delayed`. Delayed values among
another call's arguments (also inside lists, tuples and dicts) are its parents. ``compute``
turns the whole expression into one graph, a node per distinct Delayed object (a shared
sub-expression runs once), runs it on the server and returns the value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from ._graph import Graph, Node
from ._graph_spec import Retry, Seconds, base_name
from ._request import Options, Udf


class Delayed:
    """A UDF call to run later, in a graph; see the module docstring."""

    def __init__(
        self,
        fn: Udf,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: Retry | int | None,
        options: Options | None,
    ) -> None:
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._retry = retry
        self._options = options

    def compute(
        self,
        client: Any,
        *,
        progress: bool | None = False,
        name: str = "",
        parallelism: int = 0,
        fail_fast: bool = False,
        deadline: Seconds | None = None,
        result_ttl: Seconds | None = None,
    ) -> Any:
        """Run the expression as one graph on ``client`` (a Client) and return its value;
        ``NodeFailedError`` if it failed. The other keywords are ``Client.graph``'s."""
        graph = client.graph(
            name, parallelism=parallelism, fail_fast=fail_fast, deadline=deadline,
            result_ttl=result_ttl,
        )  # fmt: skip
        (node,) = build(graph, [self])
        graph.run(progress=progress)
        return node.result()

    def to_graph(self, client: Any, name: str = "") -> tuple[Graph, Node]:
        """The graph ``compute`` would run (not submitted) and the node of this value: to
        draw it, change its options, or run it yourself."""
        graph: Graph = client.graph(name)
        (node,) = build(graph, [self])
        return graph, node

    def _children(self) -> Iterator[Delayed]:
        for value in (*self._args, *self._kwargs.values()):
            yield from _delayed_in(value)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "a Delayed value can be an argument of a delayed call (also inside lists, tuples "
            "and dicts), not part of another value; compute() it"
        )

    def __repr__(self) -> str:
        return f"Delayed({base_name(self._fn)})"


class DelayedFunction:
    """A UDF whose calls return :class:`Delayed` values (``delayed(fn)``)."""

    def __init__(self, fn: Udf, retry: Retry | int | None, options: Options | None) -> None:
        self.fn = fn
        self._retry = retry
        self._options = options
        if callable(fn):
            functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Delayed:
        return Delayed(self.fn, args, kwargs, self._retry, self._options)

    def __repr__(self) -> str:
        return f"delayed({base_name(self.fn)})"


@overload
def delayed(
    fn: Udf, /, *, retry: Retry | int | None = None, options: Options | None = None
) -> DelayedFunction: ...


@overload
def delayed(
    *, retry: Retry | int | None = None, options: Options | None = None
) -> Callable[[Udf], DelayedFunction]: ...


def delayed(
    fn: Udf | None = None, /, *, retry: Retry | int | None = None, options: Options | None = None
) -> DelayedFunction | Callable[[Udf], DelayedFunction]:
    """Make ``fn`` (any UDF form ``Client.exec`` takes) build graphs instead of running:
    ``@delayed``, ``@delayed(retry=3)``, or ``delayed(fn)(x)`` inline. ``retry`` and
    ``options`` apply to each of its nodes."""
    if fn is None:
        return functools.partial(DelayedFunction, retry=retry, options=options)
    return DelayedFunction(fn, retry, options)


def compute(client: Any, *values: Delayed, progress: bool | None = False) -> tuple[Any, ...]:
    """Run several delayed values as one graph (shared parts once); their values in order."""
    graph: Graph = client.graph()
    nodes = build(graph, values)
    graph.run(progress=progress)
    return tuple(node.result() for node in nodes)


def build(graph: Graph, values: Sequence[Delayed]) -> list[Node]:
    """Add the nodes of ``values`` and everything they use to ``graph``: one node per
    Delayed object, parents first."""
    nodes: dict[int, Node] = {}
    for value in _parents_first(values):
        args = _substituted(value._args, nodes)
        kwargs = _substituted(value._kwargs, nodes)
        nodes[id(value)] = graph._add(
            value._fn, args, kwargs, retry=value._retry, options=value._options
        )
    return [nodes[id(value)] for value in values]


def _parents_first(values: Sequence[Delayed]) -> list[Delayed]:
    """Post-order without recursion, so deep chains of calls do not hit the recursion limit."""
    order: list[Delayed] = []
    done: set[int] = set()
    stack: list[tuple[Delayed, bool]] = [(v, False) for v in reversed(values)]
    while stack:
        value, expanded = stack.pop()
        if id(value) in done:
            continue
        if expanded:
            done.add(id(value))
            order.append(value)
            continue
        stack.append((value, True))
        stack += [(child, False) for child in reversed(list(value._children()))]
    return order


def _delayed_in(value: Any) -> Iterator[Delayed]:
    if isinstance(value, Delayed):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _delayed_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _delayed_in(item)


def _substituted(value: Any, nodes: dict[int, Node]) -> Any:
    """``value`` with each Delayed replaced by its node (containers rebuilt only if needed)."""
    if isinstance(value, Delayed):
        return nodes[id(value)]
    if isinstance(value, list | tuple) and next(_delayed_in(value), None) is not None:
        items = [_substituted(v, nodes) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict) and next(_delayed_in(value), None) is not None:
        return {k: _substituted(v, nodes) for k, v in value.items()}
    return value
