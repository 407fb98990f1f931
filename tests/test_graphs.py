"""GraphService against a real server: shapes, failures, retries, cancellation, restarts,
dynamic fan-out, access control, and what travels to the client."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from graph_support import get, node, ref, run, states, submit, value, watch
from identity_support import World

from tilefn.v1 import graph_service_pb2 as gpb
from tilefn.v1 import graph_service_pb2_grpc, udf_pb2, udf_service_pb2_grpc
from tilefn.v1 import udf_service_pb2 as pb

from conftest import ServerProcess, authed_channel, process_gone, wait_for

SLEEP = "def f(seconds):\n    import time\n    time.sleep(seconds)\n    return seconds\n"
FAIL = "def f(*args):\n    raise ValueError('boom')\n"


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> grpc.Channel:
    return authed_channel(server.address)


def test_diamond(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("a", "def f(): return 2"),
        node("b", "def f(x): return x * 10", ref("a")),
        node("c", "def f(x, offset): return x + offset", ref("a"), offset=1),
        node("d", "def f(parts): return {'sum': sum(parts['xs'])}", {"xs": [ref("b"), ref("c")]}),
    )
    assert gpb.GraphStatus.Name(graph.status) == "GRAPH_STATUS_SUCCEEDED"
    assert list(states(graph).values()) == ["SUCCEEDED"] * 4
    assert [n.id for n in graph.nodes] == ["a", "b", "c", "d"]
    assert {n.id: list(n.parents) for n in graph.nodes}["d"] == ["b", "c"]
    assert value(channel, graph, "d") == {"sum": 23}
    assert graph.node_counts == {"NODE_STATUS_SUCCEEDED": 4}


def test_explicit_ordering_without_data(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("first", "def f():\n    import time\n    return time.time()"),
        node("second", "def f():\n    import time\n    return time.time()", depends_on=("first",)),
    )
    assert value(channel, graph, "second") > value(channel, graph, "first")
    assert list(next(n for n in graph.nodes if n.id == "second").parents) == ["first"]


def test_a_thousand_node_fan_out_and_in(channel: grpc.Channel) -> None:
    leaves = [node(f"leaf{i}", "def f(i): return i * 2", i) for i in range(997)]
    total = node("total", "def f(parts): return sum(parts)", [ref(f"leaf{i}") for i in range(997)])
    start = node("start", "def f(): return 1")
    done = node("done", "def f(total, one): return total + one", ref("total"), ref("start"))
    graph = run(channel, start, *leaves, total, done)
    assert graph.node_counts == {"NODE_STATUS_SUCCEEDED": 1000}
    assert value(channel, graph, "done") == sum(i * 2 for i in range(997)) + 1


def test_dynamic_fan_out_over_items(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("parts", "def f(n): return [[i, i + 1] for i in range(n)]", 5),
        node(
            "width",
            "def f(pair, scale): return (pair[1] - pair[0]) * scale",
            ref("parts"),
            map_over="parts",
            scale=3,
        ),
        node("again", "def f(w): return w + 1", ref("width"), map_over="width"),
        node("total", "def f(ws): return sum(ws)", ref("again")),
    )
    found = states(graph)
    assert [k for k in found if k.startswith("width[")] == [f"width[{i}]" for i in range(5)]
    assert all(status == "SUCCEEDED" for status in found.values()), found
    assert value(channel, graph, "total") == 5 * (3 + 1)
    assert next(n.instances for n in graph.nodes if n.id == "width") == 5


def test_fan_out_over_nothing_and_over_a_scalar(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("empty", "def f(): return []"),
        node("each", "def f(x): return x", ref("empty"), map_over="empty"),
        node("count", "def f(xs): return len(xs)", ref("each")),
        node("scalar", "def f(): return 7"),
        node("bad", "def f(x): return x", ref("scalar"), map_over="scalar"),
    )
    found = states(graph)
    assert (found["each"], found["count"], found["bad"]) == ("SUCCEEDED", "SUCCEEDED", "FAILED")
    assert value(channel, graph, "count") == 0
    bad = next(n for n in graph.nodes if n.id == "bad")
    assert bad.error_reason == "ERROR_REASON_ITEMS_INVALID" and "no items" in bad.error_message


def test_failure_spares_independent_branches(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("bad", FAIL),
        node("child", "def f(x): return x", ref("bad")),
        node("grandchild", "def f(x): return x", ref("child")),
        node("other", SLEEP, 0.3),
    )
    found = states(graph)
    assert found == {
        "bad": "FAILED", "child": "PARENT_FAILED", "grandchild": "PARENT_FAILED",
        "other": "SUCCEEDED",
    }  # fmt: skip
    by_id = {n.id: n for n in graph.nodes}
    assert by_id["bad"].error_reason == "ERROR_REASON_UDF_RAISED"
    assert "boom" in by_id["bad"].error_message
    assert by_id["grandchild"].error_reason == "ERROR_REASON_PARENT_FAILED"
    assert gpb.GraphStatus.Name(graph.status) == "GRAPH_STATUS_FAILED"
    assert graph.error_reason == "ERROR_REASON_UDF_RAISED" and "'bad'" in graph.error_message


def test_fail_fast_stops_the_whole_graph(channel: grpc.Channel) -> None:
    graph = run(
        channel,
        node("bad", FAIL),
        node("child", "def f(x): return x", ref("bad")),
        node("slow", SLEEP, 60),
        node("after", "def f(x): return x", ref("slow")),
        fail_fast=True,
    )
    found = states(graph)
    assert found == {
        "bad": "FAILED", "child": "PARENT_FAILED", "slow": "CANCELLED", "after": "CANCELLED",
    }  # fmt: skip
    assert next(n for n in graph.nodes if n.id == "slow").error_reason == (
        "ERROR_REASON_GRAPH_STOPPED"
    )
    assert graph.error_reason == "ERROR_REASON_UDF_RAISED"


def test_a_flaky_node_succeeds_on_retry(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # One worker, reused by the namespace's tasks (a UDF's exception does not retire it): the
    # flaky node counts its attempts in the worker's builtins, fails the first and succeeds
    # the second, whatever the timing. (A version failing for 4 s after its parent ran once
    # started 4 s late in a full run.) Its own store: --no-auth, no lock shared with others.
    flags = ("--store", str(tmp_path / "own.sqlite3"), "--no-auth", "--max-workers", "1")
    channel = authed_channel(make_server(*flags, "--ready-workers", "1").address)
    flaky = (
        "def f(x):\n    import builtins\n"
        "    builtins.flaky_tries = getattr(builtins, 'flaky_tries', 0) + 1\n"
        "    if builtins.flaky_tries < 2:\n        raise RuntimeError('not yet')\n"
        "    return x\n"
    )
    graph = submit(
        channel,
        # a second's wait, so that the watch below is attached before the first attempt
        node("parent", "def f():\n    import time\n    time.sleep(1)\n    return 'ok'"),
        node("flaky", flaky, ref("parent"), attempts=4, backoff=0.2),
    )
    events = watch(channel, graph.graph_id)
    kinds = [gpb.NodeEventKind.Name(e.kind) for e in events if e.node.id == "flaky"]
    assert "NODE_EVENT_KIND_RETRIED" in kinds and kinds[-1] == "NODE_EVENT_KIND_SUCCEEDED"
    final = get(channel, graph.graph_id)
    flaky_node = next(n for n in final.nodes if n.id == "flaky")
    assert flaky_node.attempts == 2 and value(channel, final, "flaky") == "ok"


def test_retry_policy_runs_out(channel: grpc.Channel) -> None:
    graph = run(channel, node("bad", FAIL, attempts=3, backoff=0.05))
    bad = graph.nodes[0]
    assert (states(graph)["bad"], bad.attempts) == ("FAILED", 3)


def test_invalid_requests_are_not_retried(channel: grpc.Channel) -> None:
    graph = run(channel, node("broken", "def f(:", attempts=5, backoff=0.05))
    broken = graph.nodes[0]
    assert (broken.status, broken.attempts) == (gpb.NODE_STATUS_FAILED, 1)
    assert broken.error_reason == "ERROR_REASON_UDF_SOURCE_INVALID"


def test_watch_streams_every_change(channel: grpc.Channel) -> None:
    graph = submit(channel, node("a", SLEEP, 0.2), node("b", "def f(x): return [x] * 3", ref("a")))
    events = watch(channel, graph.graph_id)
    assert gpb.GraphStatus.Name(events[-1].graph_status) == "GRAPH_STATUS_SUCCEEDED"
    kinds = [(e.node.id, gpb.NodeEventKind.Name(e.kind).removeprefix("NODE_EVENT_KIND_"))
             for e in events[:-1] if e.kind != gpb.NODE_EVENT_KIND_STATE]  # fmt: skip
    assert [k for n, k in kinds if n == "b"] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    b_done = next(e for e in events if e.node.id == "b" and e.kind == gpb.NODE_EVENT_KIND_SUCCEEDED)
    assert b_done.node.result_bytes > 0 and b_done.node.task_id
    again = watch(channel, graph.graph_id)  # an ended graph: its states, then its end
    assert [e.kind for e in again[:-1]] == [gpb.NODE_EVENT_KIND_STATE] * 2
    assert again[-1].graph_status == gpb.GRAPH_STATUS_SUCCEEDED


def test_intermediate_results_stay_on_the_server(channel: grpc.Channel) -> None:
    big = "def f():\n    import numpy as np\n    return np.ones(2_000_000)\n"
    graph = submit(
        channel, node("big", big), node("small", "def f(a): return float(a.sum())", ref("big"))
    )
    events = watch(channel, graph.graph_id)
    final = get(channel, graph.graph_id)
    sent = sum(e.ByteSize() for e in events) + final.ByteSize() + graph.ByteSize()
    assert next(n.result_bytes for n in final.nodes if n.id == "big") > 16_000_000
    assert sent < 20_000  # node states only: the 16 MB array never came to the client
    assert value(channel, final, "small") == 2_000_000.0


def test_cancel_mid_run_kills_running_nodes(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    channel = authed_channel(server.address)
    idle = len(server.worker_pids())
    graph = submit(
        channel,
        *[node(f"s{i}", SLEEP, 60) for i in range(3)],
        node("t", SLEEP, 1, depends_on=("s0",)),
    )
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    wait_for(
        lambda: [states(get(channel, graph.graph_id))[f"s{i}"] for i in range(3)]
        == ["RUNNING"] * 3,
        timeout=60, what="the nodes to run",
    )  # fmt: skip
    busy = server.worker_pids()  # the 3 running nodes' workers and the spare ready ones
    cancelled = stub.CancelGraph(gpb.CancelGraphRequest(graph_id=graph.graph_id), timeout=30)
    assert gpb.GraphStatus.Name(cancelled.status) == "GRAPH_STATUS_CANCELLED"
    assert set(states(cancelled).values()) == {"CANCELLED"}
    assert len(busy) >= 3 + idle - 2
    wait_for(  # the three workers that ran the nodes are killed
        lambda: len(busy & server.worker_pids()) <= len(busy) - 3, timeout=30,
        what="the nodes' workers to be killed",
    )  # fmt: skip
    tasks = udf_service_pb2_grpc.UdfServiceStub(channel)
    task = tasks.GetTask(pb.GetTaskRequest(task_id=cancelled.nodes[0].task_id), timeout=10)
    assert pb.TaskStatus.Name(task.status) == "TASK_STATUS_CANCELLED"


def test_parallelism_cap(channel: grpc.Channel) -> None:
    stamp = (
        "def f(i):\n    import time\n    a = time.time()\n    time.sleep(0.2)\n"
        "    return [a, time.time()]\n"
    )
    graph = run(channel, *[node(f"n{i}", stamp, i) for i in range(6)], parallelism=2)
    spans = [value(channel, graph, f"n{i}") for i in range(6)]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2


def test_deadline(channel: grpc.Channel) -> None:
    request_deadline = gpb.SubmitGraphRequest(nodes=[node("slow", SLEEP, 60)])
    request_deadline.options.deadline.FromMilliseconds(1500)
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    started = stub.SubmitGraph(request_deadline, timeout=30)
    watch(channel, started.graph_id)
    final = get(channel, started.graph_id)
    assert final.error_reason == "ERROR_REASON_GRAPH_DEADLINE"
    assert states(final) == {"slow": "CANCELLED"}


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([node("a", "def f(x): return x", ref("b")), node("b", "def f(x): return x", ref("a"))],
         "form a cycle"),
        ([node("a", "def f(x): return x", ref("nope"))], "no node's id"),
        ([node("a", "def f(): return 1"), node("a", "def f(): return 1")], "two nodes"),
        ([node("bad id!", "def f(): return 1")], "node ids"),
        ([node("a", "def f(x): return x", ref("a"))], "itself"),
        ([], "no nodes"),
        ([node("a", "")], "node 'a'"),
    ],
)  # fmt: skip
def test_malformed_graphs_are_refused(
    channel: grpc.Channel, nodes: list[gpb.GraphNodeSpec], expected: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        submit(channel, *nodes)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()


def test_node_references_outside_graphs_are_refused(channel: grpc.Channel) -> None:
    stub = udf_service_pb2_grpc.UdfServiceStub(channel)
    request = pb.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text="def f(x): return x")),
        args=[udf_pb2.Argument(node="a")],
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CallUdf(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "graph node" in caught.value.details()


def test_unknown_graphs(channel: grpc.Channel) -> None:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    for call in (stub.GetGraph, stub.CancelGraph, stub.RetryGraph):
        with pytest.raises(grpc.RpcError) as caught:
            call(gpb.GetGraphRequest(graph_id="nope"), timeout=10)  # same shape for all three
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_and_retry_rules(channel: grpc.Channel) -> None:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    ok = run(channel, node("a", "def f(): return 1"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.RetryGraph(gpb.RetryGraphRequest(graph_id=ok.graph_id), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = stub.ListGraphs(gpb.ListGraphsRequest(page_size=50), timeout=10)
    mine = next(g for g in listed.graphs if g.graph_id == ok.graph_id)
    assert mine.node_counts == {"NODE_STATUS_SUCCEEDED": 1} and not mine.nodes
    failed = stub.ListGraphs(
        gpb.ListGraphsRequest(status=gpb.GRAPH_STATUS_FAILED, page_size=1000), timeout=10
    )
    assert all(g.status == gpb.GRAPH_STATUS_FAILED for g in failed.graphs)
    page = stub.ListGraphs(gpb.ListGraphsRequest(page_size=1), timeout=10)
    following = stub.ListGraphs(
        gpb.ListGraphsRequest(page_size=1, page_token=page.next_page_token), timeout=10
    )
    assert page.graphs[0].graph_id != following.graphs[0].graph_id


def test_retry_reruns_failed_nodes_and_reuses_the_rest(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    store = str(tmp_path / "s.sqlite3")
    first = ServerProcess(tmp_path, "--store", store, "--no-auth")  # killed: not make_server's
    channel = grpc.insecure_channel(first.address)
    try:
        graph = submit(
            channel,
            node("a", "def f(): return 5"),
            node("b", SLEEP, 4, depends_on=("a",)),
            node("c", "def f(a, b): return a + b", ref("a"), ref("b")),
        )
        wait_for(lambda: states(get(channel, graph.graph_id))["b"] == "RUNNING", timeout=60,
                 what="b to run")  # fmt: skip
        time.sleep(1.2)  # the writer has written b's state (every 0.5 s, then every 0.5 s)
        a_task = states_and_tasks(get(channel, graph.graph_id))["a"][1]
    finally:
        os.kill(first.pid, signal.SIGKILL)
        assert first.stop() == -signal.SIGKILL
    again = make_server("--store", store, "--no-auth")
    channel = grpc.insecure_channel(again.address)
    after = get(channel, graph.graph_id)
    assert gpb.GraphStatus.Name(after.status) == "GRAPH_STATUS_FAILED"
    assert after.error_reason == "ERROR_REASON_SERVER_RESTARTED"
    assert states(after) == {"a": "SUCCEEDED", "b": "FAILED", "c": "CANCELLED"}
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    retried = stub.RetryGraph(gpb.RetryGraphRequest(graph_id=graph.graph_id), timeout=30)
    assert retried.retries == 1
    watch(channel, graph.graph_id)
    final = get(channel, graph.graph_id)
    assert set(states(final).values()) == {"SUCCEEDED"}
    assert states_and_tasks(final)["a"][1] == a_task  # reused, not run again
    assert value(channel, final, "c") == 5 + 4


def states_and_tasks(graph: gpb.Graph) -> dict[str, tuple[int, str]]:
    return {n.id: (n.status, n.task_id) for n in graph.nodes}


def test_retry_after_a_failure_reruns_descendants(channel: grpc.Channel) -> None:
    flaky = (
        "def f(t):\n    import time\n    if time.time() < t + 3:\n"
        "        raise RuntimeError('early')\n    return 1\n"
    )
    graph = run(
        channel,
        node("clock", "def f():\n    import time\n    return time.time()"),
        node("flaky", flaky, ref("clock")),
        node("child", "def f(x): return x + 1", ref("flaky")),
    )
    assert states(graph) == {"clock": "SUCCEEDED", "flaky": "FAILED", "child": "PARENT_FAILED"}
    time.sleep(3)
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    stub.RetryGraph(gpb.RetryGraphRequest(graph_id=graph.graph_id), timeout=30)
    watch(channel, graph.graph_id)
    final = get(channel, graph.graph_id)
    assert set(states(final).values()) == {"SUCCEEDED"}
    assert value(channel, final, "child") == 2
    assert final.nodes[0].task_id == graph.nodes[0].task_id


def test_graphs_are_private_and_nodes_run_with_the_submitters_rights(world: World) -> None:
    def channel_of(who: str) -> grpc.Channel:
        bearer = (("authorization", f"Bearer {world.tokens[who]}"),)
        return authed_channel(world.server.address, bearer)

    read = node("read", "def f(data): return int(data['v'].sum())")
    read.call.arrays.add(uri="tiledb://acme/data")
    alice, bob = channel_of("alice"), channel_of("bob")
    mine = run(alice, read)
    assert states(mine) == {"read": "SUCCEEDED"}
    with pytest.raises(grpc.RpcError) as caught:
        get(bob, mine.graph_id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    theirs = run(bob, read)
    failed = theirs.nodes[0]
    assert failed.status == gpb.NODE_STATUS_FAILED and failed.attempts == 1
    assert failed.error_reason in ("ERROR_REASON_ARRAY_NOT_FOUND", "ERROR_REASON_PERMISSION_DENIED")
    listed = graph_service_pb2_grpc.GraphServiceStub(bob).ListGraphs(
        gpb.ListGraphsRequest(), timeout=10
    )
    assert mine.graph_id not in {g.graph_id for g in listed.graphs}


def test_a_registered_udf_the_caller_cannot_see_is_refused_at_submission(
    channel: grpc.Channel,
) -> None:
    missing = node("x", "def f(): return 1")
    missing.call.udf.CopyFrom(udf_pb2.UdfSpec(registered="nobody/nothing"))
    with pytest.raises(grpc.RpcError) as caught:
        submit(channel, node("a", "def f(): return 1"), missing)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().startswith("node 'x':")


def test_unknown_list_status_is_refused(channel: grpc.Channel) -> None:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListGraphs(gpb.ListGraphsRequest(status=99), timeout=10)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_shutdown_stops_graphs_for_a_later_retry(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    store = str(tmp_path / "d.sqlite3")
    first = ServerProcess(tmp_path, "--store", store, "--no-auth", "--drain-grace", "1")
    channel = grpc.insecure_channel(first.address)
    graph = submit(channel, node("quick", "def f(): return 1"), node("slow", SLEEP, 60))
    wait_for(lambda: states(get(channel, graph.graph_id))["slow"] == "RUNNING", timeout=60,
             what="slow to run")  # fmt: skip
    processes = {first.template_pid(), *first.worker_pids()}
    assert first.stop() == 0  # SIGTERM: drains for 1 s, then stops the graph
    wait_for(lambda: all(map(process_gone, processes)), timeout=30,
             what="the workers and template to exit")  # fmt: skip
    again = make_server("--store", store, "--no-auth")
    after = get(grpc.insecure_channel(again.address), graph.graph_id)
    assert after.error_reason == "ERROR_REASON_SHUTTING_DOWN"
    assert states(after) == {"quick": "SUCCEEDED", "slow": "CANCELLED"}


def _batches(channel: grpc.Channel, graph_id: str) -> list[gpb.GraphEventBatch]:
    stub = graph_service_pb2_grpc.GraphServiceStub(channel)
    return list(stub.WatchGraphBatches(gpb.WatchGraphRequest(graph_id=graph_id), timeout=120))


def test_watch_in_batches(channel: grpc.Channel) -> None:
    leaves = [node(f"leaf{i}", "def f(i): return i", i) for i in range(40)]
    total = node("total", "def f(xs): return sum(xs)", [ref(f"leaf{i}") for i in range(40)])
    graph = submit(channel, *leaves, total)
    batches = _batches(channel, graph.graph_id)  # live
    assert all(batch.events for batch in batches)
    events = [event for batch in batches for event in batch.events]
    assert len(batches) <= len(events)
    assert events[-1].graph_status == gpb.GRAPH_STATUS_SUCCEEDED
    last = {e.node.id: e.node.status for e in events if e.node.id}  # states, then changes
    assert last == dict.fromkeys(
        [f"leaf{i}" for i in range(40)] + ["total"], gpb.NODE_STATUS_SUCCEEDED
    )
    # an ended graph, from the store: the same as WatchGraph, one batch of states and the end
    stored = _batches(channel, graph.graph_id)
    assert [len(b.events) for b in stored] == [41, 1]
    plain = watch(channel, graph.graph_id)
    assert [(e.node, e.graph_status) for b in stored for e in b.events] == [
        (e.node, e.graph_status) for e in plain
    ]
    with pytest.raises(grpc.RpcError) as missing:
        _batches(channel, "no-such-graph")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
