"""The Python graph client against a real server: building, nested references, dynamic
fan-out, array nodes, failures and retries, cancel, options, attaching, listing, delayed,
pictures, progress, asyncio."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiledb

from tilefn.client import (
    AsyncClient,
    Client,
    NodeFailedError,
    NotFoundError,
    Options,
    Retry,
    Source,
    TaskFailedError,
    TilefnError,
    compute,
    delayed,
)
from tilefn.server import demo

from arrays_support import DENSE, uri
from conftest import ServerProcess, wait_for


def sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def boom(*_: Any) -> None:
    raise ValueError("boom")


def test_diamond_with_nested_references(client: Client) -> None:
    g = client.graph("diamond")
    a = g.submit(lambda: 2, name="a")
    b = g.submit(lambda x: x * 10, a, name="b")
    c = g.submit(lambda x, offset: x + offset, a, offset=1, name="c")
    d = g.submit(
        lambda parts: {
            "sum": sum(parts["xs"]), "n": parts["n"], "first": parts["pair"][0],
            "array": parts["pair"][1].tolist(), "kind": type(parts["pair"]).__name__,
        },
        {"xs": [b, c], "pair": (a, np.arange(3)), "n": 7},
        name="d",
    )  # fmt: skip
    assert g.run(progress=False) is g
    assert g.status == "SUCCEEDED" and g.graph_id
    assert [n.id for n in g.nodes] == ["a", "b", "c", "d"]
    assert [n.status for n in g.nodes] == ["SUCCEEDED"] * 4
    assert d.info.parents == ("a", "b", "c")
    got = d.result()
    assert (got["sum"], got["n"], got["first"], got["array"]) == (23, 7, 2, [0, 1, 2])
    assert got["kind"] == "list"  # a tuple holding a node arrives as a list
    assert a.task_id and a.attempts == 1 and a.error is None
    assert client.task(b.task_id).method == "GraphNode"
    assert g.info is not None and g.info.node_counts == {"SUCCEEDED": 4}


def test_generated_ids_and_explicit_ordering(client: Client) -> None:
    g = client.graph()
    stamp = Source("def stamp():\n    import time\n    return time.time()\n")
    first, second = g.submit(stamp), g.submit(stamp)
    first.depends_on(second)
    assert (first.id, second.id) == ("stamp-0", "stamp-1")
    g.run(progress=False)
    assert first.result() > second.result()
    assert first.info.parents == ("stamp-1",)


def test_dynamic_fan_out_then_reduce(client: Client) -> None:
    g = client.graph("fan-out")
    parts = g.submit(lambda n: [[i, i + 1] for i in range(n)], 5, name="parts")
    width = g.map(lambda pair, scale: (pair[1] - pair[0]) * scale, parts, scale=3, name="width")
    again = g.map(lambda w: w + 1, width, name="again")
    placed = g.map(lambda k, pair: pair[0] * k, parts, 10, parts, name="placed")
    total = g.submit(lambda ws, ps: sum(ws) + sum(ps), again, placed, name="total")
    g.run(progress=False)
    assert g.status == "SUCCEEDED"
    assert [i.id for i in width.instances] == [f"width[{i}]" for i in range(5)]
    assert width.result() == [3] * 5 and again.result() == [4] * 5
    assert placed.result() == [0, 10, 20, 30, 40]
    assert total.result() == 20 + 100
    assert width.instances[3].result() == 3 and width.mapped and not total.mapped
    assert width.info.instances == 5 and width.task_id == ""


def test_fan_out_over_nothing_and_over_a_scalar(client: Client) -> None:
    g = client.graph()
    empty = g.submit(lambda: [], name="empty")
    each = g.map(lambda x: x, empty, name="each")
    count = g.submit(len, each, name="count")
    scalar = g.submit(lambda: 7, name="scalar")
    bad = g.map(lambda x: x, scalar, name="bad")
    g.run(progress=False)
    assert each.result() == [] and count.result() == 0
    with pytest.raises(NodeFailedError) as caught:
        bad.result()
    assert caught.value.reason == "ERROR_REASON_ITEMS_INVALID"


def test_array_ranges_fan_out_then_reduce(array_client: Client) -> None:
    g = array_client.graph("rows")
    parts = [
        g.apply(uri(DENSE), lambda data: float(data["a"].sum()), ranges=[(lo, lo + 4), None],
                attrs=["a"], name=f"rows-{lo}")
        for lo in range(0, 20, 5)
    ]  # fmt: skip
    total = g.submit(sum, parts, name="total")
    g.run(progress=False)
    assert total.result() == float(np.arange(300).sum() * 0.5)
    assert parts[1].result() == float(np.arange(75, 150).sum() * 0.5)


def test_failures_retries_and_retry_graph(client: Client) -> None:
    g = client.graph("failing")
    bad = g.submit(boom, name="bad", retry=Retry(2, backoff=0.05))
    child = g.submit(lambda x: x, bad, name="child")
    other = g.submit(lambda: 5, name="other")
    g.run(progress=False)
    assert g.status == "FAILED" and other.result() == 5
    assert g.info is not None and "bad" in g.info.error_message
    with pytest.raises(NodeFailedError) as caught:
        bad.result()
    assert isinstance(caught.value, TaskFailedError)
    assert caught.value.reason == "ERROR_REASON_UDF_RAISED" and "boom" in str(caught.value)
    assert bad.attempts == 2 and caught.value.node.attempts == 2
    with pytest.raises(TaskFailedError) as parent:
        child.result()
    assert parent.value.reason == "ERROR_REASON_PARENT_FAILED"
    kept, failed_task = other.task_id, bad.task_id
    g.retry(progress=False)
    assert g.status == "FAILED" and g.info.retries == 1
    assert other.task_id == kept and bad.task_id != failed_task  # only what failed ran again
    assert child.status == "PARENT_FAILED"


def test_fail_fast_deadline_and_node_options(client: Client) -> None:
    g = client.graph("fast", fail_fast=True)
    g.submit(boom, name="bad")
    slow = g.submit(sleep, 30, name="slow")
    g.run(progress=False)
    assert slow.status == "CANCELLED" and slow.error is not None
    assert slow.error.reason == "ERROR_REASON_GRAPH_STOPPED"

    g = client.graph("late", deadline=1.5)
    slow = g.submit(sleep, 30, name="slow")
    g.run(progress=False)
    assert g.status == "FAILED" and g.info is not None
    assert g.info.error_reason == "ERROR_REASON_GRAPH_DEADLINE"

    g = client.graph("timeout", result_ttl=3600)
    short = g.submit(sleep, 30, name="short", options=Options(timeout=1))
    fine = g.submit(lambda: 1, name="fine")
    g.run(progress=False)
    assert short.error is not None and short.error.reason == "ERROR_REASON_TIMEOUT"
    task = client.task(fine.task_id)
    assert task.result_expires_at is not None and task.finished_at is not None
    assert 3500 < (task.result_expires_at - task.finished_at).total_seconds() <= 3601


def test_cancel_a_running_graph(client: Client) -> None:
    g = client.graph("cancelled")
    slow = g.submit(sleep, 60, name="slow")
    after = g.submit(lambda x: x, slow, name="after")
    g.run(wait=False)
    wait_for(lambda: g.refresh() and slow.status == "RUNNING", timeout=60, what="slow to run")
    g.cancel()
    assert g.status == "CANCELLED"
    assert (slow.status, after.status) == ("CANCELLED", "CANCELLED")
    with pytest.raises(NodeFailedError, match="CANCELLED"):
        slow.result()


def test_wait_timeout_leaves_the_graph_running(client: Client) -> None:
    g = client.graph()
    slow = g.submit(sleep, 60)
    g.run(wait=False)
    with pytest.raises(TimeoutError):
        g.wait(timeout=0.5, progress=False)
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.3)
    assert g.status == "RUNNING"
    g.cancel()


def test_attach_and_list(client: Client) -> None:
    g = client.graph("attached")
    parts = g.submit(lambda: [1, 2, 3], name="parts")
    g.map(lambda x: x * x, parts, name="squares")
    g.run(progress=False)
    again = client.graph_by_id(g.graph_id)
    assert again.name == "attached" and [n.id for n in again.nodes] == ["parts", "squares"]
    assert again["squares"].mapped and again["squares"].result() == [1, 4, 9]
    assert again.wait() is again and again.status == "SUCCEEDED"
    listed = client.graphs(limit=200)
    mine = next(info for info in listed if info.graph_id == g.graph_id)
    assert mine.name == "attached" and mine.node_counts == {"SUCCEEDED": 4}
    assert all(info.status == "SUCCEEDED" for info in client.graphs(status="SUCCEEDED"))
    assert len(client.graphs(limit=1)) == 1
    with pytest.raises(NotFoundError):
        client.graph_by_id("no-such-graph")


def test_listing_pages(server: ServerProcess) -> None:
    with Client(server.address) as client:
        for i in range(3):
            g = client.graph(f"page-{i}")
            g.submit(lambda: 1)
            g.run(progress=False)
        request_pages = client.graphs(limit=3)
        assert [info.name for info in request_pages] == ["page-2", "page-1", "page-0"]


def test_a_refused_node_names_itself(client: Client) -> None:
    g = client.graph()
    g.submit(lambda: 1)
    g.submit("nobody/nothing")
    with pytest.raises(TilefnError, match="node 'nothing-0'"):
        g.run()


def test_logs_of_a_node(client: Client) -> None:
    g = client.graph()
    talk = g.submit(lambda: print("hello from a node") or 1, name="talk")
    g.run(progress=False)
    assert "hello from a node" in talk.logs().text


def test_delayed(client: Client) -> None:
    @delayed
    def inc(x: int) -> int:
        return x + 1

    @delayed(retry=2)
    def total(parts: list[int], extra: dict[str, int]) -> int:
        return sum(parts) + sum(extra.values())

    one = inc(1)
    value = total([one, inc(one), inc(10)], {"k": one})
    graph, _ = value.to_graph(client)
    assert [n.id for n in graph.nodes] == ["inc-0", "inc-1", "inc-2", "total-0"]
    assert value.compute(client) == 2 + 3 + 11 + 2
    assert compute(client, one, value) == (2, 18)
    assert delayed(Source("def sq(x):\n    return x * x\n"))(inc(2)).compute(client) == 9
    with pytest.raises(NodeFailedError, match="boom"):
        delayed(boom)(one).compute(client)


def test_progress_dot_and_render(
    client: Client, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    g = client.graph("drawn")
    parts = g.submit(lambda: [1, 2], name="parts")
    each = g.map(lambda x: x, parts, name="each")
    g.submit(boom, each, name="bad")
    g.run(progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rgraph drawn [") and err.endswith("\n") and "1 failed" in err
    dot = g.to_dot()
    assert '"each" [label="each\\nSUCCEEDED\\n2/2 done"' in dot and "shape=box3d" in dot
    assert '"bad" [label="bad\\nFAILED\\nUDF_RAISED", fillcolor="#f59a9a"]' in dot
    root = ET.parse(g.render(tmp_path / "g.svg")).getroot()
    ids = {e.get("id") for e in root.iter("{http://www.w3.org/2000/svg}g")}
    assert ids == {"parts", "each", "bad"}


def test_async_graph(server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncClient(server.address) as client:
            g = client.graph("async")
            parts = g.submit(lambda: [1, 2, 3], name="parts")
            total = g.submit(sum, g.map(lambda x: x * 2, parts), name="total")
            await g.run(progress=False)
            assert await g.status() == "SUCCEEDED" and await total.result() == 12
            attached = await client.graph_by_id(g.graph_id)
            assert [n.status for n in attached.nodes] == ["SUCCEEDED"] * 3
            assert g.graph_id in [info.graph_id for info in await client.graphs(limit=50)]
            slow = client.graph()
            node = slow.submit(sleep, 60)
            await slow.run(wait=False)
            with pytest.raises(TimeoutError):
                await node.result(timeout=0.3)
            await slow.cancel()
            assert await slow.status() == "CANCELLED"

    asyncio.run(main())


def test_the_documented_example(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    """docs/graphs.md's complete example works as written, against `make run`'s demo data."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "graphs.md").read_text()
    section = text[text.index("## Python client") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/graphs.md has no Python client example"
    data = tmp_path / "data"
    demo.create(data)
    server = make_server("--data-root", str(data))
    result = subprocess.run(
        [sys.executable, "-c", code.group(1).replace("127.0.0.1:50051", server.address)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = ast.literal_eval(result.stdout.strip())
    with tiledb.open(str(data / "demo" / "temperature")) as array:
        temp = array[:]["temp"]
    means = {start: temp[start : start + 30].mean() for start in range(0, 360, 30)}
    assert printed["first_day"] == max(means, key=lambda s: means[s])
    assert printed["mean"] == pytest.approx(means[printed["first_day"]])
    assert ET.parse(tmp_path / "warmest.svg").getroot().tag.endswith("svg")


def test_the_command_line_lists_shows_watches_and_cancels_graphs(server: ServerProcess) -> None:
    def tilefn(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tilefn.client._cli", *args, "-t", server.address]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    with Client(server.address) as client:
        done = client.graph("cli-done")
        first = done.submit(lambda: 20, name="first")
        done.submit(boom, first, name="second")
        done.run()
        quick = client.graph("cli-quick")
        quick.submit(sleep, 1, name="nap")
        quick.run(wait=False)
        stuck = client.graph("cli-stuck")
        stuck.submit(sleep, 3600, name="forever")
        stuck.run(wait=False)
    listed = tilefn("graphs", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "FAILED" in rows[done.graph_id] and "cli-done" in rows[done.graph_id]
    assert "RUNNING" in rows[stuck.graph_id]
    shown = tilefn("graph", done.graph_id)
    assert shown.returncode == 1  # it failed
    lines = shown.stdout.splitlines()
    assert lines[0] == f"graph {done.graph_id}  FAILED"
    assert any(" SUCCEEDED " in row and "bytes" in row for row in lines[1:])
    assert any(" FAILED " in row and "UDF_RAISED" in row for row in lines[1:])
    assert "digraph" in tilefn("graph", done.graph_id, "--dot").stdout
    watched = tilefn("graph", quick.graph_id, "--watch")
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.splitlines()[0] == f"graph {quick.graph_id}  SUCCEEDED"
    cancelled = tilefn("graph", stuck.graph_id, "--cancel")
    assert cancelled.returncode == 1 and "CANCELLED" in cancelled.stdout.splitlines()[0]
    missing = tilefn("graph", "no-such-graph")
    assert missing.returncode == 1 and "GRAPH_NOT_FOUND" in missing.stderr
