"""Deadlines, cancellation, timeouts, worker reuse, drain and server death: nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tilefn.client import Client, UdfTimeoutError, UnavailableError, WorkerCrashedError
from tilefn.client._request import Options, build_request
from tilefn.v1 import udf_service_pb2_grpc

from conftest import (
    SESSION_STORE,
    ServerProcess,
    authed_channel,
    children,
    process_gone,
    wait_for,
)


def pid_then_sleep() -> Iterator[Any]:
    """Report the worker's pid as the first item, then hang."""
    import os
    import time

    yield np.array([os.getpid()])
    time.sleep(3600)
    yield np.array([0])


def first_pid(batches: Iterator[Any]) -> int:
    return int(next(iter(batches)).column(0)[0].as_py())


def test_client_deadline_kills_the_worker(server: ServerProcess) -> None:
    request = build_request(pid_then_sleep, (), {}, Options())
    with authed_channel(server.address) as channel:
        call = udf_service_pb2_grpc.UdfServiceStub(channel).ExecuteUdf(request, timeout=3)
        responses = iter(call)
        next(responses)  # task
        ipc = b""
        with pytest.raises(grpc.RpcError) as caught:
            for response in responses:
                ipc += response.ipc
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    import pyarrow as pa

    pid = int(pa.ipc.open_stream(ipc).read_next_batch().column(0)[0].as_py())
    wait_for(lambda: server.worker_gone(pid), what=f"worker {pid} to be killed")


def test_client_cancel_kills_the_worker(client: Client, server: ServerProcess) -> None:
    stream = client.stream(pid_then_sleep)
    pid = first_pid(stream)
    assert pid in server.worker_ns_pids()
    stream.cancel()
    wait_for(lambda: server.worker_gone(pid), what=f"worker {pid} to be killed")


def test_timeout_option_kills_the_worker(client: Client, server: ServerProcess) -> None:
    stream = client.with_options(timeout=1.0).stream(pid_then_sleep)
    batches = iter(stream)
    pid = first_pid(batches)
    with pytest.raises(UdfTimeoutError) as caught:
        list(batches)
    assert caught.value.reason == "ERROR_REASON_TIMEOUT"
    assert caught.value.metadata["timeout_seconds"] == "1"
    wait_for(lambda: server.worker_gone(pid), what=f"worker {pid} to be killed")


def test_busy_loop_is_killed_on_timeout(client: Client) -> None:
    def spin() -> None:
        while True:
            pass

    with pytest.raises(UdfTimeoutError):
        client.with_options(timeout=0.5).exec(spin)


def getpid() -> int:
    import os

    return os.getpid()


def test_workers_are_reused_within_a_namespace(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--max-tasks-per-worker", "3")
    with Client(server.address) as client:
        pids = [client.exec(getpid) for _ in range(6)]
    assert pids[0] == pids[1] == pids[2] and pids[3] == pids[4] == pids[5]
    assert pids[0] != pids[3]


def test_one_shot_workers(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--max-tasks-per-worker", "1", "--ready-workers", "1")
    with Client(server.address) as client:
        pids = [client.exec(getpid) for _ in range(4)]
    assert len(set(pids)) == 4
    wait_for(lambda: all(server.worker_gone(p) for p in pids), what="used workers to exit")


def test_worker_state_is_cleared_by_a_failure_kill(client: Client) -> None:
    """A worker killed mid-task is replaced: the next call runs in a fresh process."""
    stream = client.stream(pid_then_sleep)
    pid = first_pid(stream)
    stream.cancel()
    assert client.exec(getpid) != pid


def test_concurrent_calls(client: Client) -> None:
    results: list[Any] = []

    def call(i: int) -> None:
        results.append(client.exec(lambda n: np.full(1000, n).sum(), i))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [i * 1000 for i in range(16)]


def test_drain_finishes_in_flight_calls(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()

    def slow() -> int:
        import time

        time.sleep(1.5)
        return 7

    with Client(server.address) as client:
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(client.exec(slow)))
        thread.start()
        wait_for(lambda: len(server.worker_pids()) > 0, what="workers")
        time.sleep(0.5)  # let the call reach its worker before the signal
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
    assert outcome == [7]
    assert server.stop() == 0


def test_server_death_takes_template_and_workers_along(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    template = server.template_pid()
    wait_for(lambda: len(server.worker_pids()) >= 2, what="ready workers")
    workers = children(template)  # the workers and the init of their PID namespace
    os.kill(server.pid, signal.SIGKILL)
    server.stop()
    for pid in (template, *workers):
        wait_for(lambda pid=pid: process_gone(pid), what=f"process {pid} to die with the server")
    assert children(template) == []


def test_template_death_is_recovered(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    template = server.template_pid()
    os.kill(template, signal.SIGKILL)
    wait_for(lambda: process_gone(template), what="the template to die")
    wait_for(
        lambda: children(server.pid) not in ([], [template]),
        timeout=30,
        what="a new template",
    )
    with Client(server.address) as client:
        assert client.exec(lambda: 6 * 7) == 42
    assert server.template_pid() != template


def test_template_death_fails_the_call_in_flight(
    make_server: Callable[..., ServerProcess],
) -> None:
    """The call's worker dies with the template: the call fails then, not at its timeout."""
    server = make_server()
    with Client(server.address) as client:
        batches = iter(client.with_options(timeout=30).stream(pid_then_sleep))
        first_pid(batches)
        os.kill(server.template_pid(), signal.SIGKILL)
        with pytest.raises(WorkerCrashedError) as caught:
            list(batches)
    assert caught.value.reason == "ERROR_REASON_WORKER_DIED"


def flood() -> Iterator[Any]:
    """Report the worker's pid in the first 1 MiB batch, then stream 200 more."""
    import os

    yield np.full(1 << 17, os.getpid(), dtype=np.int64)
    for _ in range(200):
        yield np.zeros(1 << 17, dtype=np.int64)


def test_worker_killed_while_the_client_lags_is_reported_as_died(
    client: Client, server: ServerProcess
) -> None:
    """The template reports the death while the server waits on the client, not on the worker."""
    batches = iter(client.stream(flood))
    pid = first_pid(batches)
    host_pid = server.worker_ns_pids()[pid]
    wchan = Path(f"/proc/{host_pid}/wchan")
    # The worker blocks on its full channel once the server stops reading it.
    wait_for(lambda: wchan.read_text() == "sock_alloc_send_pskb", what="a full channel")
    os.kill(host_pid, signal.SIGKILL)
    wait_for(lambda: server.worker_gone(pid), what=f"worker {pid} to be reaped")
    with pytest.raises(WorkerCrashedError) as caught:
        list(batches)
    assert caught.value.reason == "ERROR_REASON_WORKER_DIED"
    assert "SIGKILL" in caught.value.message


def health_status(address: str) -> int:
    with authed_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
    return int(reply.status)


def test_workers_failing_to_start_fail_calls_fast(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Break every new worker's filesystem layer: calls must fail fast, health must say so."""
    server = make_server("--ready-workers", "1", "--max-tasks-per-worker", "1")
    (root,) = Path("/tmp").glob(f"tilefn-root-{server.template_pid()}-*")
    moved = root.with_name(root.name + "-moved")
    root.rename(moved)
    root.write_text("mounting a root here now fails")
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    with Client(server.address) as client:
        try:
            for pid in server.worker_pids():
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: health_status(server.address) == not_serving, what="NOT_SERVING")
            with pytest.raises(UnavailableError) as caught:  # not a timeout: it fails fast
                client.with_options(timeout=120).exec(lambda: 1)
            assert caught.value.reason == "ERROR_REASON_WORKERS_UNAVAILABLE"
        finally:
            root.unlink()
            moved.rename(root)
        wait_for(lambda: health_status(server.address) == serving, what="SERVING again")
        assert client.exec(lambda: 6 * 7) == 42


def test_strict_sandbox_refuses_to_start_without_privileges(tmp_path: Path) -> None:
    command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable]
    command += ["-m", "tilefn.server", "--port", "0", "--data-root", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "sandbox layers unavailable" in result.stderr and "filesystem" in result.stderr


def test_degraded_sandbox_runs_and_says_so(tmp_path: Path) -> None:
    # Without capabilities the namespace, uid and capability layers cannot be applied.
    with subprocess.Popen(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m",
         "tilefn.server", "--port", "0", "--data-root", str(tmp_path), "--sandbox", "degraded",
         "--store", str(SESSION_STORE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        address = process.stdout.readline().split()[-1]
        with Client(address) as client:
            assert client.exec(lambda: 1) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        log = process.stderr.read()
    unavailable = log.split("unavailable: ", 1)[1].splitlines()[0].split(", ")
    assert {"capabilities_dropped", "distinct_uid", "filesystem"} <= set(unavailable)
