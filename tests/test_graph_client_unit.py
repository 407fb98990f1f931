"""The graph client on its own (no server): request building, nested references, ids, order,
events, results and errors over a GraphService stand-in, delayed, DOT, SVG and progress."""

from __future__ import annotations

import asyncio
import functools
import io
import pickle
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from graph_client_support import FakeAsyncClient, FakeClient, FakeGraphServer, FakeRpcError

from tilefn.client import (
    ArrayRead,
    Client,
    Delayed,
    Graph,
    InvalidRequestError,
    NodeFailedError,
    NotFoundError,
    Options,
    Registered,
    Retry,
    Source,
    TaskFailedError,
    compute,
    delayed,
)
from tilefn.client._graph_calls import list_request
from tilefn.client._graph_progress import Progress, line, wanted
from tilefn.client._graph_render import Box, layers
from tilefn.client._graph_spec import base_name, encode_value, ordered
from tilefn.client._graph_state import GraphEvent, GraphState
from tilefn.client._request import encode_argument
from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import udf_pb2


def double(x: int) -> int:
    return x * 2


def add(*xs: int) -> int:
    return sum(xs)


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def g(client: FakeClient) -> Graph:
    return client.graph("unit")


def request_nodes(g: Graph) -> dict[str, gpb.GraphNodeSpec]:
    return {n.id: n for n in g._submit_request().nodes}


# ---------------------------------------------------------------- arguments


def test_a_node_argument_is_a_reference(g: Graph) -> None:
    a = g.submit(double, 1)
    b = g.submit(double, a, factor=a)
    spec = request_nodes(g)[b.id]
    assert spec.call.args[0] == udf_pb2.Argument(node=a.id)
    assert spec.call.kwargs["factor"] == udf_pb2.Argument(node=a.id)
    assert b.info.parents == (a.id,)


def test_references_nest_in_lists_tuples_and_dicts(g: Graph) -> None:
    a, b = g.submit(double, 1), g.submit(double, 2)
    value = {"xs": [a, (b, 3)], "scale": 2.5, "plain": (1, 2)}
    arg = encode_value(value, g)
    assert [e.key for e in arg.map.entries] == ["xs", "scale", "plain"]  # order kept
    xs, scale, plain = (e.value for e in arg.map.entries)
    assert xs.list.items[0] == udf_pb2.Argument(node=a.id)
    inner = xs.list.items[1].list  # a tuple holding a node becomes a list
    assert inner.items[0] == udf_pb2.Argument(node=b.id)
    assert inner.items[1] == udf_pb2.Argument(json="3")
    assert scale == encode_argument(2.5)
    assert plain == encode_argument((1, 2))  # no node inside: encoded as Client.exec does


def test_values_without_nodes_are_encoded_as_client_exec_encodes_them(g: Graph) -> None:
    for value in ([1, 2], (1, 2), {"a": [1]}, np.arange(3), "text", None, {1: "x"}):
        assert encode_value(value, g) == encode_argument(value)


def test_nested_containers_keep_their_values(client: FakeClient, g: Graph) -> None:
    a = g.submit(lambda: 5, name="a")
    b = g.submit(lambda d: d, {"n": a, "pair": (a, np.arange(2)), "deep": [[[a]]]}, name="b")
    g.run(progress=False)
    got = b.result()
    assert got["n"] == 5 and got["deep"] == [[[5]]]
    assert got["pair"][0] == 5 and list(got["pair"][1]) == [0, 1]
    assert isinstance(got["pair"], list)  # tuples holding nodes arrive as lists


def test_dict_keys_must_be_strings_when_the_dict_holds_nodes(g: Graph) -> None:
    a = g.submit(double, 1)
    with pytest.raises(TypeError, match="string keys"):
        g.submit(add, {1: a})


def test_an_array_read_cannot_sit_next_to_references(g: Graph) -> None:
    a = g.submit(double, 1)
    with pytest.raises(TypeError, match="ArrayRead"):
        g.submit(add, [a, ArrayRead("tiledb://acme/x")])
    node = g.submit(add, ArrayRead("tiledb://acme/x"), a)  # top level: the server reads it
    assert request_nodes(g)[node.id].call.args[0].WhichOneof("kind") == "array"


def test_nodes_of_another_graph_or_instances_are_refused(client: FakeClient, g: Graph) -> None:
    other = client.graph().submit(double, 1)
    with pytest.raises(ValueError, match="another graph"):
        g.submit(double, [other])
    with pytest.raises(ValueError, match="not a node of this graph"):
        g.submit(double, 1, depends_on=[other])
    parts = g.submit(lambda: [1, 2], name="parts")
    each = g.map(double, parts, name="each")
    g._state.nodes["each[0]"] = g._state.nodes["each"]  # as if it had its instances
    with pytest.raises(ValueError, match="instance"):
        encode_value(g["each[0]"], g)
    assert each.mapped and not parts.mapped


def test_a_node_inside_other_values_is_refused_not_pickled(g: Graph) -> None:
    a = g.submit(double, 1)
    with pytest.raises(TypeError, match="argument of its graph's nodes"):
        g.submit(add, {a})  # a set: only lists, tuples and dicts are searched
    with pytest.raises(TypeError):
        pickle.dumps(a)


# ---------------------------------------------------------------- ids, options, order


def test_generated_ids_come_from_what_runs() -> None:
    assert base_name(double) == "double"
    assert base_name(lambda: 1) == "lambda"
    assert base_name(functools.partial(double, 2)) == "double"
    assert base_name(Source("import os\n\ndef load(x):\n    return x\n")) == "load"
    assert base_name(Source("x = 1", entry_point="main")) == "main"
    assert base_name("def score(x):\n    return x\n") == "score"
    assert base_name("acme/train@3") == "train"
    assert base_name(Registered("acme/fit")) == "fit"
    assert base_name(sum) == "sum"


def test_ids_are_unique_and_given_ones_are_checked(g: Graph) -> None:
    given = g.submit(double, 0, name="double-1")
    ids = [g.submit(double, i).id for i in range(3)]
    assert ids == ["double-0", "double-2", "double-3"]  # skips the id given by hand
    assert given.id == "double-1"
    with pytest.raises(ValueError, match="already"):
        g.submit(double, 1, name="double-0")
    with pytest.raises(ValueError, match="letters, digits"):
        g.submit(double, 1, name="has space")
    with pytest.raises(ValueError, match="letters, digits"):
        g.submit(double, 1, name="x" * 129)


def test_retry_policies(g: Graph) -> None:
    g.submit(double, 1, name="three", retry=3)
    g.submit(double, 1, name="slow", retry=Retry(4, backoff=0.5, max_backoff=timedelta(5)))
    g.submit(double, 1, name="none")
    nodes = request_nodes(g)
    assert nodes["three"].retry.attempts == 3 and not nodes["three"].retry.HasField("backoff")
    slow = nodes["slow"].retry
    assert (slow.attempts, slow.backoff.ToMilliseconds()) == (4, 500)
    assert slow.max_backoff.ToSeconds() == 5 * 86400
    assert not nodes["none"].HasField("retry")
    with pytest.raises(ValueError, match="at least 1"):
        g.submit(double, 1, retry=0)
    with pytest.raises(TypeError):
        g.submit(double, 1, retry=True)
    with pytest.raises(TypeError):
        g.submit(double, {g.nodes[0]})
    assert g.submit(double, 1).id == "double-0"  # the refused nodes took no id


def test_execution_options_per_node_and_from_the_client() -> None:
    client = FakeClient(options=Options(timeout=5, memory_bytes=1 << 28))
    g = client.graph("opts", parallelism=3, fail_fast=True, deadline=60, result_ttl=timedelta(1))
    g.submit(double, 1, name="default")
    g.submit(double, 1, name="own", options=Options(cpu_time=2.5, compression="zstd"))
    request = g._submit_request()
    nodes = {n.id: n for n in request.nodes}
    assert nodes["default"].call.options.timeout.ToSeconds() == 5
    assert nodes["default"].call.options.memory_bytes == 1 << 28
    own = nodes["own"].call.options
    assert own.cpu_time.ToMilliseconds() == 2500 and own.compression == udf_pb2.COMPRESSION_ZSTD
    assert not own.HasField("timeout")
    options = request.options
    assert (options.parallelism, options.fail_fast, options.deadline.ToSeconds()) == (3, True, 60)
    assert options.result_ttl.ToSeconds() == 86400 and request.name == "opts"
    with pytest.raises(ValueError, match="negative"):
        client.graph(deadline=-1)


def test_a_real_client_builds_graphs_without_calling_the_server() -> None:
    with Client("127.0.0.1:1", token="") as real:
        g = real.with_options(timeout=7).graph("offline")
        a = g.submit(double, 2)
        assert g._submit_request().nodes[0].call.options.timeout.ToSeconds() == 7
        assert a.status == "PENDING" and g.status == "PENDING" and g.graph_id == ""


def test_apply_reads_an_array_before_the_arguments(client: FakeClient, g: Graph) -> None:
    offset = g.submit(lambda: 10, name="offset")
    node = g.apply(
        "tiledb://acme/dense", lambda data, off, scale: (data["uri"], off * scale), offset,
        ranges=[(0, 9), None], attrs=["a"], layout="C", condition="a > 1", scale=2,
    )  # fmt: skip
    call = request_nodes(g)[node.id].call
    (read,) = call.arrays
    assert read.uri == "tiledb://acme/dense" and list(read.attributes) == ["a"]
    assert read.ranges[0].ranges[0].end.int64_value == 9 and not read.ranges[1].ranges
    assert (read.layout, read.condition) == (udf_pb2.LAYOUT_ROW_MAJOR, "a > 1")
    g.run(progress=False)
    assert node.result() == ("tiledb://acme/dense", 20)
    again = client.graph().apply(ArrayRead("tiledb://acme/x", batched=True), double)
    assert again._graph._submit_request().nodes[0].call.arrays[0].batched


def test_map_passes_the_parent_first_unless_placed(g: Graph) -> None:
    parts = g.submit(lambda: [1, 2], name="parts")
    first = g.map(lambda x, k: x * k, parts, 10, name="first")
    placed = g.map(lambda k, x: x * k, parts, 10, parts, name="placed")
    nested = g.map(lambda d: d["x"], parts, {"x": parts}, name="nested")
    nodes = request_nodes(g)
    assert nodes["first"].map_over == "parts"
    assert nodes["first"].call.args[0] == udf_pb2.Argument(node="parts")
    assert [a.WhichOneof("kind") for a in nodes["placed"].call.args] == ["json", "node"]
    assert len(nodes["nested"].call.args) == 1 and not nodes["nested"].depends_on
    g.run(progress=False)
    assert first.result() == [10, 20] and placed.result() == [10, 20]
    assert nested.result() == [1, 2]


def test_depends_on_orders_nodes_and_refuses_cycles(g: Graph) -> None:
    late = g.submit(double, 1, name="late")
    early = g.submit(double, 2, name="early")
    late.depends_on(early)
    third = g.submit(double, 3, name="third", depends_on=[late, early, late])
    assert [n.id for n in g._submit_request().nodes] == ["early", "late", "third"]
    assert list(request_nodes(g)["third"].depends_on) == ["late", "early"]
    with pytest.raises(ValueError, match="cycle"):
        early.depends_on(third)
    assert request_nodes(g)["early"].depends_on == []  # the refused dependency is gone
    with pytest.raises(ValueError, match="cycle"):
        late.depends_on(late)


def test_ordered_keeps_the_given_order_among_ready_nodes() -> None:
    assert ordered({"c": [], "b": ["c"], "a": [], "d": ["a", "b"]}) == ["c", "b", "a", "d"]
    with pytest.raises(ValueError, match="not in the graph"):
        ordered({"a": ["zz"]})


def test_a_submitted_graph_cannot_change(g: Graph) -> None:
    a = g.submit(double, 1)
    g.run(progress=False)
    with pytest.raises(RuntimeError, match="submitted"):
        g.submit(double, 2)
    with pytest.raises(RuntimeError, match="submitted"):
        a.depends_on(a)
    with pytest.raises(RuntimeError, match="retry"):
        g.run()


# ---------------------------------------------------------------- running and events


def test_run_follows_events_to_the_end(client: FakeClient, g: Graph) -> None:
    a = g.submit(lambda: 2, name="a")
    b = g.submit(lambda x: x * 10, a, name="b")
    c = g.submit(lambda x, offset: x + offset, a, offset=1, name="c")
    d = g.submit(lambda parts: sum(parts["xs"]), {"xs": [b, c]}, name="d")
    assert g.run(progress=False) is g
    assert g.status == "SUCCEEDED" and g.graph_id == "graph-1"
    assert [n.status for n in g.nodes] == ["SUCCEEDED"] * 4
    assert d.result() == 23 and a.task_id == "task-a" and a.attempts == 1
    assert d.error is None and g.info is not None and g.info.name == "unit"
    assert all(call.cancelled for call in client.server.calls)


def test_run_without_waiting_then_wait(client: FakeClient, g: Graph) -> None:
    a = g.submit(double, 4)
    g.run(wait=False)
    assert a.status == "WAITING" and g.info is not None and g.info.status == "RUNNING"
    g.wait()
    assert a.status == "SUCCEEDED" and a.result() == 8


def test_node_result_watches_only_until_the_node_ends(client: FakeClient, g: Graph) -> None:
    a = g.submit(double, 1, name="a")
    g.submit(double, 2, name="b")
    g.run(wait=False)
    assert a.result() == 2
    (call,) = client.server.calls
    assert call.cancelled and call.taken < len(call.messages)  # stopped early
    assert g["b"].status != "SUCCEEDED"  # not followed that far


def test_failures_raise_node_failed_errors(g: Graph) -> None:
    bad = g.submit(lambda: 1 / 0, name="bad")
    child = g.submit(double, bad, name="child")
    other = g.submit(double, 3, name="other")
    g.run(progress=False)
    assert g.status == "FAILED" and other.result() == 6
    with pytest.raises(NodeFailedError) as caught:
        bad.result()
    error = caught.value
    assert isinstance(error, TaskFailedError) and error.task is None
    assert error.reason == "ERROR_REASON_UDF_RAISED" and "ZeroDivisionError" in str(error)
    assert error.node.id == "bad" and error.graph_id == g.graph_id
    assert error.task_id == "task-bad"
    with pytest.raises(TaskFailedError, match="PARENT_FAILED") as parent:
        child.result()
    assert parent.value.reason == "ERROR_REASON_PARENT_FAILED"
    assert child.error is not None and child.error.reason == "ERROR_REASON_PARENT_FAILED"


def test_mapped_nodes_have_instances_and_a_list_of_outputs(g: Graph) -> None:
    parts = g.submit(lambda n: [[i, i + 1] for i in range(n)], 3, name="parts")
    width = g.map(lambda pair: pair[1] - pair[0] + pair[0], parts, name="width")
    again = g.map(lambda w: w * 100, width, name="again")
    total = g.submit(sum, again, name="total")
    g.run(progress=False)
    assert [i.id for i in width.instances] == ["width[0]", "width[1]", "width[2]"]
    assert width.result() == [1, 2, 3] and width.instances[2].result() == 3
    assert total.result() == 600 and again.mapped and not total.mapped
    assert [n.id for n in g.nodes] == ["parts", "width", "again", "total"]
    assert width.instances[0].logs().text == "printed by task-width[0]\n"
    with pytest.raises(ValueError, match="mapped node"):
        width.logs()


def test_watch_yields_events_and_updates_nodes(g: Graph) -> None:
    a = g.submit(double, 1, name="a")
    g.run(wait=False)
    events = list(g.watch())
    assert events[0] == GraphEvent("STATE", events[0].node, "", None)
    assert [e.kind for e in events[1:]] == ["QUEUED", "RUNNING", "SUCCEEDED", ""]
    assert events[-1].graph_status == "SUCCEEDED" and events[-1].node is None
    assert a.status == "SUCCEEDED"


def test_wait_timeout_is_a_timeout_error() -> None:
    client = FakeClient(FakeGraphServer(stall=True))
    g = client.graph()
    a = g.submit(double, 1)
    g.run(wait=False)
    with pytest.raises(TimeoutError):
        g.wait(timeout=0.5, progress=False)
    with pytest.raises(TimeoutError):
        a.result(timeout=0.5)
    g.retry(progress=False)  # the fake runs it this time
    assert g.status == "SUCCEEDED" and a.result() == 2 and g.info and g.info.retries == 1


def test_server_errors_are_mapped(client: FakeClient, g: Graph) -> None:
    g.submit(double, 1)
    client.server.error = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "node 'x': bad")
    with pytest.raises(InvalidRequestError, match="node 'x'"):
        g.run()
    with pytest.raises(NotFoundError):
        client.graph_by_id("nope")


def test_cancel_and_attach(client: FakeClient) -> None:
    client.server.stall = True
    g = client.graph("long")
    a = g.submit(double, 1, name="a")
    g.run(wait=False).cancel()
    assert g.status == "CANCELLED" and a.status == "CANCELLED"
    with pytest.raises(NodeFailedError, match="CANCELLED"):
        a.result()
    attached = client.graph_by_id(g.graph_id)
    assert attached.name == "long" and [n.id for n in attached.nodes] == ["a"]
    assert attached["a"].status == "CANCELLED"
    with pytest.raises(RuntimeError, match="submitted"):
        attached.submit(double, 1)


def test_attached_graphs_know_mapped_nodes_by_their_state(client: FakeClient) -> None:
    g = client.graph()
    parts = g.submit(lambda: [1, 2], name="parts")
    g.map(double, parts, name="each")
    g.run(progress=False)
    attached = client.graph_by_id(g.graph_id)
    assert attached["each"].mapped and not attached["parts"].mapped
    assert attached["each"].result() == [2, 4]
    assert "each[1]" in attached.to_dot() or "2/2 done" in attached.to_dot()


def test_listing_pages_through_graphs(client: FakeClient) -> None:
    for i in range(5):
        g = client.graph(f"g{i}")
        g.submit(double, i)
        g.run(progress=False)
    assert [info.graph_id for info in client.graphs()][:2] == ["graph-5", "graph-4"]
    assert len(client.graphs(limit=3)) == 3
    found = client.graphs(status="succeeded")
    assert len(found) == 5 and found[0].status == "SUCCEEDED"
    request = list_request(None, "", 2)
    assert (request.page_size, request.status) == (2, gpb.GRAPH_STATUS_UNSPECIFIED)
    assert list_request("failed", "acme", None).status == gpb.GRAPH_STATUS_FAILED
    with pytest.raises(ValueError, match="status"):
        list_request("unspecified", "", None)
    with pytest.raises(ValueError, match="status"):
        list_request("DONE", "", None)


def test_async_graph() -> None:
    async def main() -> None:
        client = FakeAsyncClient()
        g = client.graph("async")
        parts = g.submit(lambda: [1, 2, 3], name="parts")
        total = g.submit(sum, g.map(double, parts), name="total")
        await g.run(progress=False)
        assert await g.status() == "SUCCEEDED"
        assert await total.result() == 12
        assert await g.nodes[1].result() == [2, 4, 6]
        assert (await parts.logs()).text == "printed by task-parts\n"
        attached = await client.graph_by_id(g.graph_id)
        assert [n.status for n in attached.nodes] == ["SUCCEEDED"] * 3
        assert [e.kind async for e in attached.watch()][-1] == ""
        assert [i.graph_id for i in await client.graphs()] == [g.graph_id]
        client.server.stall = True
        slow = client.graph()
        slow.submit(double, 1)
        await slow.run(wait=False)
        with pytest.raises(TimeoutError):
            await slow.wait(timeout=0.2, progress=False)
        await slow.cancel()
        assert await slow.status() == "CANCELLED"

    asyncio.run(main())


def test_graph_state_counts_a_mapped_node_as_its_instances() -> None:
    state = GraphState()
    graph = gpb.Graph(graph_id="x", status="GRAPH_STATUS_RUNNING")
    graph.nodes.add(id="m", status="NODE_STATUS_RUNNING", instances=2)
    graph.nodes.add(id="m[0]", status="NODE_STATUS_SUCCEEDED")
    graph.nodes.add(id="m[1]", status="NODE_STATUS_RUNNING")
    state.load(graph)
    assert state.counts() == {"SUCCEEDED": 1, "RUNNING": 1}
    final = GraphEvent.from_proto(gpb.GraphEvent(graph_status="GRAPH_STATUS_CANCELLED"))
    assert state.apply(final) and state.status == "CANCELLED"
    assert state.instances("m") == ["m[0]", "m[1]"] and state.instances("zz") == []


# ---------------------------------------------------------------- delayed


@delayed
def inc(x: int) -> int:
    return x + 1


@delayed(retry=2, options=Options(timeout=9))
def total(*xs: Any, extra: dict[str, int] | None = None) -> int:
    return sum(x if isinstance(x, int) else sum(x) for x in xs) + sum((extra or {}).values())


def test_delayed_shares_sub_expressions(client: FakeClient) -> None:
    one = inc(1)
    result = total(one, inc(one), [one, inc(5)], extra={"k": one})
    assert isinstance(result, Delayed) and repr(result) == "Delayed(total)"
    g, node = result.to_graph(client)
    assert node.id == "total-0"
    assert [n.id for n in g.nodes] == ["inc-0", "inc-1", "inc-2", "total-0"]
    spec = request_nodes(g)["total-0"]
    assert spec.retry.attempts == 2 and spec.call.options.timeout.ToSeconds() == 9
    assert spec.call.args[2].list.items[0] == udf_pb2.Argument(node="inc-0")
    assert spec.call.kwargs["extra"].map.entries[0].value == udf_pb2.Argument(node="inc-0")
    assert result.compute(client) == 2 + 3 + (2 + 6) + 2
    assert compute(client, one, result) == (2, 15)


def test_delayed_inline_and_other_udf_forms(client: FakeClient) -> None:
    square = delayed(Source("def square(x):\n    return x * x\n"))
    assert repr(square) == "delayed(square)" and square(3).compute(client) == 9
    assert delayed(double)(delayed(double)(5)).compute(client) == 20
    registered = delayed("acme/fit")(1)
    g, node = registered.to_graph(client)
    assert node.id == "fit-0" and request_nodes(g)["fit-0"].call.udf.registered == "acme/fit"
    assert inc.__name__ == "inc" and inc.__doc__ is None


def test_a_deep_chain_of_delayed_calls_needs_no_recursion(client: FakeClient) -> None:
    value = inc(0)
    for _ in range(1500):
        value = inc(value)
    g, node = value.to_graph(client)
    assert len(g.nodes) == 1501 and node.id == "inc-1500"


def test_delayed_failures_and_misuse(client: FakeClient) -> None:
    with pytest.raises(NodeFailedError, match="ZeroDivisionError"):
        delayed(lambda x: x / 0)(1).compute(client)
    with pytest.raises(TypeError, match="compute"):
        inc({inc(1)}).to_graph(client)  # a set is not searched, so it would be pickled


# ---------------------------------------------------------------- pictures and progress


def built(client: FakeClient) -> Graph:
    g = client.graph('say "hi"')
    a = g.submit(lambda: [1, 2], name="a")
    each = g.map(double, a, name="each")
    b = g.submit(sum, each, name="b")
    g.submit(lambda: 1 / 0, name="bad").depends_on(b)
    return g


def test_to_dot_shows_states_and_edge_kinds(client: FakeClient) -> None:
    g = built(client)
    dot = g.to_dot()
    assert dot.startswith('digraph "say \\"hi\\"" {') and 'label="say \\"hi\\" (pending)"' in dot
    assert '"a" [label="a\\nPENDING", fillcolor="#eeeeee"];' in dot
    assert '"each" [label="each\\nPENDING", fillcolor="#eeeeee", shape=box3d];' in dot
    assert '"a" -> "each" [style=bold, label="map"];' in dot
    assert '"each" -> "b";' in dot and '"b" -> "bad" [style=dashed];' in dot
    g.run(progress=False)
    dot = g.to_dot()
    assert '"each" [label="each\\nSUCCEEDED\\n2/2 done", fillcolor="#a6e3a1", shape=box3d]' in dot
    assert '"bad" [label="bad\\nFAILED\\nUDF_RAISED", fillcolor="#f59a9a"];' in dot
    assert "each[0]" not in dot  # instances are summed up in their mapped node


def test_render_writes_a_layered_svg(client: FakeClient, tmp_path: Path) -> None:
    g = built(client)
    g.run(progress=False)
    path = g.render(tmp_path / "graph.svg")
    root = ET.parse(path).getroot()
    svg = "{http://www.w3.org/2000/svg}"
    boxes = {e.get("id"): e for e in root.iter(f"{svg}g")}
    assert set(boxes) == {"a", "each", "b", "bad"}
    top = {k: float(v.find(f"{svg}rect").get("y")) for k, v in boxes.items()}  # type: ignore[union-attr]
    assert top["a"] < top["each"] < top["b"] < top["bad"]
    assert len(boxes["each"].findall(f"{svg}rect")) == 3  # a stack: the mapped node
    fills = {v.findall(f"{svg}rect")[-1].get("fill") for v in boxes.values()}
    assert fills == {"#a6e3a1", "#f59a9a"}
    assert len(root.findall(f"{svg}path")) == 3
    with pytest.raises(ValueError, match="SVG"):
        g.render(tmp_path / "graph.png")


def test_render_with_dot_needs_graphviz(
    client: FakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="dot"):
        built(client).render(tmp_path / "g.png", use_dot=True)


def test_layers_put_children_under_their_parents_near_them() -> None:
    boxes = [
        Box("r1", "WAITING", "", (), False),
        Box("r2", "WAITING", "", (), False),
        Box("c2", "WAITING", "", (("r2", "data"),), False),
        Box("c1", "WAITING", "", (("r1", "data"),), False),
        Box("end", "WAITING", "", (("c1", "data"), ("r2", "order")), False),
    ]
    rows = [[b.id for b in row] for row in layers(boxes)]
    assert rows == [["r1", "r2"], ["c1", "c2"], ["end"]]


def test_progress_line() -> None:
    counts = {"SUCCEEDED": 6, "RUNNING": 2, "WAITING": 1, "FAILED": 1}
    text = line("graph etl", counts, 72.4)
    assert text == (
        "graph etl [##############------] 7/10 1:12 | 6 succeeded, 2 running, 1 waiting, 1 failed"
    )
    assert line("g", {}, 0) == "g [--------------------] 0/0 0:00 | starting"


def test_progress_redraws_in_place_at_most_ten_times_a_second() -> None:
    stream, now = io.StringIO(), [0.0]
    progress = Progress("g", stream=stream, clock=lambda: now[0], columns=40)
    progress.update({"RUNNING": 1})
    now[0] = 0.05
    progress.update({"SUCCEEDED": 1})  # too soon: skipped
    now[0] = 0.2
    progress.close({"SUCCEEDED": 1})
    drawn = stream.getvalue()
    assert drawn.count("\r") == 2 and drawn.endswith("\n")
    assert all(len(part) <= 39 for part in drawn.strip("\n").split("\r")[1:])


def test_progress_is_on_for_terminals_only(capsys: pytest.CaptureFixture[str]) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wanted(None, Terminal()) and not wanted(None, io.StringIO())
    assert wanted(True, io.StringIO()) and not wanted(False, Terminal())
    g = FakeClient().graph("shown")
    g.submit(double, 1)
    g.run(progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rgraph shown [") and "1/1" in err and err.endswith("\n")
    g2 = FakeClient().graph("hidden")
    g2.submit(double, 1)
    g2.run()  # pytest's captured stderr is no terminal
    assert capsys.readouterr().err == ""
