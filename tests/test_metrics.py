"""Operator metrics (Prometheus text on --metrics-port) and JSON logs (--log-format json)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tilefn.client import Client, NotFoundError, ResourceExhaustedError, UdfError

from conftest import ServerProcess, wait_for

MIB = 1 << 20
METRICS_LINE = "tilefn metrics on "

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(server: ServerProcess) -> str:
    """The endpoint a server started with --metrics-port prints after its ready line."""
    assert server.process.stdout is not None
    line = server.process.stdout.readline()
    assert line.startswith(METRICS_LINE), line
    return line[len(METRICS_LINE) :].strip()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def settle(url: str, expected: float, name: str, **labels: str) -> Samples:
    """Scrape until ``name{labels}`` is ``expected``: an aborted call's status reaches the
    client before the server's interceptor has counted it."""
    found: list[Samples] = []

    def reached() -> bool:
        found[:] = [scrape(url)]
        return value(found[0], name, **labels) == expected

    wait_for(reached, what=f"{name}{labels} to be {expected} (last: {found})")
    return found[0]


def raises() -> None:
    raise ValueError("no")


def fill_memfd(mib: int) -> int:
    """Write mib MiB into memfds: charged to the worker's cgroup (as in test_limits.py)."""
    import os

    chunk = b"\0" * ((1 << 20) - 1)
    for i in range(0, mib, 128):
        fd = os.memfd_create(f"fill{i}")
        for _ in range(min(128, mib - i)):
            os.write(fd, chunk)
    return mib


def blocks(count: int) -> Iterator[np.ndarray]:
    import numpy as np

    for i in range(count):
        yield np.full(MIB // 8, i, dtype=np.float64)  # 1 MiB each


@pytest.fixture
def metered(make_server: Callable[..., ServerProcess]) -> tuple[ServerProcess, str]:
    server = make_server("--metrics-port", "-1")
    return server, metrics_url(server)


def test_calls_are_counted_by_method_and_code(metered: tuple[ServerProcess, str]) -> None:
    server, url = metered
    with Client(server.address) as client:
        assert client.exec(lambda: 1) == 1
        assert client.exec(lambda: 2) == 2
        assert client.call(lambda: 3) == 3
        with pytest.raises(NotFoundError):
            client.exec("nobody/nothing")
        with pytest.raises(UdfError):
            client.call(raises)
    requests = "tilefn_rpc_requests_total"
    samples = settle(url, 1, requests, method="CallUdf", code="UNKNOWN")
    assert value(samples, requests, method="ExecuteUdf", code="OK") == 2
    assert value(samples, requests, method="ExecuteUdf", code="NOT_FOUND") == 1
    assert value(samples, requests, method="CallUdf", code="OK") == 1
    assert value(samples, requests, method="CallUdf", code="UNKNOWN") == 1
    latency = "tilefn_rpc_latency_seconds"
    assert value(samples, f"{latency}_count", method="ExecuteUdf") == 3
    assert value(samples, f"{latency}_count", method="CallUdf") == 2
    assert value(samples, f"{latency}_bucket", method="CallUdf", le="+Inf") == 2
    assert 0 < value(samples, f"{latency}_sum", method="ExecuteUdf") < 60
    assert value(samples, "tilefn_executions_in_flight", namespace="tests") == 0


def test_result_bytes_match_what_the_client_received(
    metered: tuple[ServerProcess, str],
) -> None:
    server, url = metered
    with Client(server.address) as client:
        stream = client.stream(blocks, 5)
        received = sum(batch.nbytes for batch in stream)
        assert received == 5 * MIB
        assert stream.summary is not None
        streamed = stream.summary.ipc_bytes
        small = client.stream(lambda: 7)
        assert small.value() == 7 and small.summary is not None
        streamed += small.summary.ipc_bytes
        assert client.call(lambda: [1, 2, 3]) == [1, 2, 3]
    samples = scrape(url)
    assert value(samples, "tilefn_result_bytes_total", method="ExecuteUdf") == streamed
    assert streamed > 5 * MIB
    assert 0 < value(samples, "tilefn_result_bytes_total", method="CallUdf") < 4096


def test_worker_pool_state_is_read_at_scrape_time(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--metrics-port", "-1", "--ready-workers", "2", "--max-workers", "3")
    url = metrics_url(server)
    wait_for(lambda: value(scrape(url), "tilefn_workers", state="ready") == 2, what="2 ready")
    samples = scrape(url)
    assert value(samples, "tilefn_workers", state="busy") == 0
    assert value(samples, "tilefn_workers_max") == 3
    with Client(server.address) as client:
        stream = client.stream(blocks, 1000)  # 1000 MiB: busy while we look
        next(iter(stream))
        busy = scrape(url)
        assert value(busy, "tilefn_workers", state="busy") == 1
        assert value(busy, "tilefn_executions_in_flight", namespace="tests") == 1
        stream.cancel()
        wait_for(
            lambda: value(scrape(url), "tilefn_executions_in_flight", namespace="tests") == 0,
            what="the cancelled execution to end",
        )
    samples = settle(url, 1, "tilefn_rpc_requests_total", method="ExecuteUdf", code="CANCELLED")
    assert value(samples, "process_resident_memory_bytes") > 0


def test_memory_limit_counts_as_a_sandbox_violation(metered: tuple[ServerProcess, str]) -> None:
    server, url = metered
    violations = "tilefn_sandbox_violations_total"
    before = scrape(url)
    for reason in ("MEMORY_LIMIT", "CPU_LIMIT", "WORKER_DIED", "WORKER_PROTOCOL_VIOLATION"):
        assert (violations, frozenset({("reason", f"ERROR_REASON_{reason}")})) in before
    with Client(server.address) as client:
        with pytest.raises(ResourceExhaustedError) as caught:
            client.with_options(memory_bytes=256 << 20).exec(fill_memfd, 512)
        assert caught.value.reason == "ERROR_REASON_MEMORY_LIMIT"
        with pytest.raises(UdfError):
            client.exec(raises)  # the UDF's own failure is no violation
    samples = settle(url, 1, "tilefn_rpc_requests_total", method="ExecuteUdf", code="UNKNOWN")
    assert value(samples, violations, reason="ERROR_REASON_MEMORY_LIMIT") == 1
    assert sum(v for (name, _), v in samples.items() if name == violations) == 1
    assert (
        value(samples, "tilefn_rpc_requests_total", method="ExecuteUdf", code="RESOURCE_EXHAUSTED")
        == 1
    )


def test_endpoint_answers_only_get_metrics(metered: tuple[ServerProcess, str]) -> None:
    _, url = metered
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.replace("/metrics", "/nothing"), timeout=10)
    assert caught.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x"), timeout=10)
    assert caught.value.code == 405
    host, port = url.split("/")[2].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as junk:
        try:  # past the 64 KiB a request may have without ending its headers: hung up on
            junk.sendall(b"\x00" * 70_000)
            assert junk.recv(100) == b""
        except ConnectionResetError:
            pass
    assert "tilefn_workers" in {name for name, _ in scrape(url)}  # still serving


def test_no_metrics_by_default(server: ServerProcess, client: Client) -> None:
    assert client.exec(lambda: 1) == 1
    assert "metrics on" not in server.log_path.read_text()


def test_json_logs_carry_the_task(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--log-format", "json", "--log-level", "DEBUG")
    with Client(server.address) as client:
        stream = client.stream(lambda: 1)
        assert stream.value() == 1
        task_id = stream.task_id
    wait_for(lambda: f"task {task_id} ended" in server.log_path.read_text(), what="task end")
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    task_lines = [line for line in lines if line.get("task_id") == task_id]
    assert [line["message"] for line in task_lines] == [
        f"task {task_id} started",
        f"task {task_id} ended",
    ]
    assert all(line["namespace"] == "tests" and line["level"] == "DEBUG" for line in task_lines)
    serving = next(line for line in lines if line["message"].startswith("serving on"))
    assert serving["level"] == "INFO" and "task_id" not in serving
    assert not any("tfn_" in line["message"] for line in lines)  # no token in any line


def test_unknown_log_format_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tilefn.server", "--port", "0", "--log-format", "xml"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "--log-format must be one of text, json, not 'xml'" in result.stderr


def test_stored_results_and_queue_depth(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--metrics-port", "-1", "--max-running", "1")
    url = metrics_url(server)
    with Client(server.address) as client:
        handle = client.submit(lambda: np.zeros(1000))
        handle.wait(timeout=60)
        stored = client.task(handle.task_id).result_bytes
        assert stored > 8000
        # Metrics of the session store's namespace "tests": at least this result.
        wait_for(
            lambda: value(scrape(url), "tilefn_stored_result_bytes", namespace="tests") >= stored,
            what="the stored bytes to count the new result",
        )
        slow = client.submit(lambda: __import__("time").sleep(1.0))
        queued = client.submit(lambda: 1)
        wait_for(
            lambda: (
                value(scrape(url), "tilefn_queue_depth", namespace="tests") == 1
                or queued.status != "QUEUED"
            ),
            what="the second task to queue",
        )
        assert queued.result(timeout=60) == 1 and slow.wait(timeout=60).status == "SUCCEEDED"
        settle(url, 0, "tilefn_queue_depth", namespace="tests")


def _fails() -> None:
    raise ValueError("no")


def test_graphs_are_counted(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--metrics-port", "-1")
    url = metrics_url(server)
    with Client(server.address) as client:
        graph = client.graph("metered")
        first = graph.submit(lambda: 1, name="first")
        graph.submit(_fails, name="bad")
        graph.submit(lambda x: x, first, name="after")
        stuck = client.graph("stuck")
        stuck.submit(lambda: __import__("time").sleep(3600), name="forever")
        stuck.run(wait=False)
        wait_for(lambda: value(scrape(url), "tilefn_graphs_running", namespace="tests") == 1)
        graph.run()
        stuck.cancel()
    samples = settle(url, 0, "tilefn_graphs_running", namespace="tests")
    assert value(samples, "tilefn_graphs_total", namespace="tests", status="FAILED") == 1
    assert value(samples, "tilefn_graphs_total", namespace="tests", status="CANCELLED") == 1
    nodes = {s: value(samples, "tilefn_graph_nodes_total", namespace="tests", status=s)
             for s in ("SUCCEEDED", "FAILED", "CANCELLED")}  # fmt: skip
    assert nodes == {"SUCCEEDED": 2, "FAILED": 1, "CANCELLED": 1}
