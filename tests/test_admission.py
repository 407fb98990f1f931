"""Admission control against a real server: full queues are refused at once with a retry hint,
namespaces share the slots fairly, and a call that gives up while queued leaves nothing behind.

Each test holds the server's only slot with a UDF that reports itself running and then sleeps,
queues calls behind it, and lets them run by cancelling it: no timing decides an outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tilefn.client import Client, ResourceExhaustedError, ResultStream
from tilefn.client._exceptions import from_rpc_error
from tilefn.client._request import Options, build_request
from tilefn.server._admin import create_namespace, create_token
from tilefn.server._sqlite import SqliteStore
from tilefn.v1 import udf_service_pb2_grpc

from conftest import ServerProcess, authed_channel

QUEUE_FULL = "ERROR_REASON_QUEUE_FULL"


def running_then_sleep() -> Iterator[Any]:
    """Say "running" with a first batch, then hold the slot until cancelled."""
    import time

    yield np.array([1])
    time.sleep(3600)
    yield np.array([0])


def stamp() -> float:
    """When the UDF ran (with one slot, UDFs run one at a time, so this orders them)."""
    import time

    return time.time()


@contextmanager
def slot_held(client: Client) -> Iterator[ResultStream]:
    """Occupy one slot until the block ends (or ``stream.cancel()`` is called in it)."""
    stream = client.stream(running_then_sleep)
    next(iter(stream))  # the UDF runs: it holds a slot
    try:
        yield stream
    finally:
        stream.cancel()


def refused(future: Future[Any]) -> ResourceExhaustedError | None:
    """The QUEUE_FULL refusal a finished call ended with, None if it succeeded."""
    error = future.exception()
    if error is None:
        return None
    assert isinstance(error, ResourceExhaustedError), repr(error)
    assert error.reason == QUEUE_FULL, str(error)
    return error


def wait_refusals(futures: list[Future[Any]], count: int) -> list[ResourceExhaustedError]:
    """Wait until ``count`` calls are done (all must be refusals); return them."""
    deadline = time.monotonic() + 60
    while sum(f.done() for f in futures) < count:
        wait(futures, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED")
        if time.monotonic() > deadline:
            pytest.fail(f"only {sum(f.done() for f in futures)} of {count} calls were refused")
    errors = [refused(f) for f in futures if f.done()]
    assert len(errors) == count, "a queued call finished while the slot was held"
    return [e for e in errors if e is not None]


def test_full_queue_is_refused_at_once_with_a_retry_hint(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--max-running", "1", "--max-queued-per-namespace", "2")
    with Client(server.address) as client, ThreadPoolExecutor(5) as threads:
        with slot_held(client):
            futures = [threads.submit(client.exec, lambda i=i: i * 10) for i in range(5)]
            errors = wait_refusals(futures, 3)  # two queue; the rest are refused
            for error in errors:
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert error.metadata == {"namespace": "tests", "limit": "2", "scope": "namespace"}
                assert error.retry_after is not None and error.retry_after > 0
                assert error.task_id
        queued = [f.result(timeout=60) for f in futures if f.exception(timeout=60) is None]
        assert len(queued) == 2 and set(queued) <= {0, 10, 20, 30, 40}  # the queued ones ran
        assert client.exec(lambda: 42) == 42


def test_server_wide_queue_limit(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--max-running", "1", "--max-queued", "1")
    with Client(server.address) as client, ThreadPoolExecutor(2) as threads:
        with slot_held(client):
            futures = [threads.submit(client.call, lambda: 1) for _ in range(2)]  # unary CallUdf
            (error,) = wait_refusals(futures, 1)
            assert error.metadata["scope"] == "server" and error.metadata["limit"] == "1"
            assert error.retry_after is not None and error.retry_after > 0
        assert [f.result(timeout=60) for f in futures if f.exception(timeout=60) is None] == [1]


@pytest.fixture
def two_tenants(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store with namespaces alpha and beta, and a token allowed to run UDFs for each."""
    path = tmp_path / "tenants.sqlite3"
    store = SqliteStore(path)
    tokens = {}
    try:
        for namespace in ("alpha", "beta"):
            create_namespace(store, namespace, "user")
            tokens[namespace], _ = create_token(store, namespace, ["run"], 3600.0, namespace)
    finally:
        store.close()
    return path, tokens


def test_a_busy_namespace_does_not_starve_another(
    make_server: Callable[..., ServerProcess], two_tenants: tuple[Path, dict[str, str]]
) -> None:
    store, tokens = two_tenants
    # The queue limits make the test deterministic: alpha's 9th and beta's 3rd call are refused,
    # which proves that 8 and 2 calls are queued before the slot frees.
    server = make_server(
        "--store", str(store), "--max-running", "1",
        "--max-queued-per-namespace", "8", "--max-queued", "10",
    )  # fmt: skip
    alpha = Client(server.address, token=tokens["alpha"])
    beta = Client(server.address, token=tokens["beta"])
    with alpha, beta, ThreadPoolExecutor(12) as threads:
        with slot_held(alpha):
            heavy = [threads.submit(alpha.exec, stamp) for _ in range(9)]
            (error,) = wait_refusals(heavy, 1)
            assert error.metadata["scope"] == "namespace"
            light = [threads.submit(beta.exec, stamp) for _ in range(3)]
            (error,) = wait_refusals(light, 1)
            assert error.metadata["scope"] == "server"
        ran = {
            f.result(timeout=60): name
            for name, group in (("alpha", heavy), ("beta", light))
            for f in group
            if f.exception(timeout=60) is None
        }
    order = [ran[t] for t in sorted(ran)]
    assert order.count("alpha") == 8 and order.count("beta") == 2
    # The slot was alpha's: beta is served next, then they alternate while both wait.
    assert order[:4] == ["beta", "alpha", "beta", "alpha"], order


def test_a_call_cancelled_while_queued_gives_its_place_back(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--max-running", "1", "--max-queued-per-namespace", "1")
    request = build_request(stamp, (), {}, Options())
    with Client(server.address) as client, authed_channel(server.address) as channel:
        stub = udf_service_pb2_grpc.UdfServiceStub(channel)
        with slot_held(client):
            with pytest.raises(grpc.RpcError) as caught:  # queued, then its deadline passes
                list(stub.ExecuteUdf(request, timeout=1))
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # Probe until the server has seen the cancellation: a probe that is refused means
            # the place is still taken; one that waits out its own deadline was queued.
            deadline = time.monotonic() + 30
            while True:
                with pytest.raises(grpc.RpcError) as caught:
                    list(stub.ExecuteUdf(request, timeout=2))
                if caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    break
                assert from_rpc_error(caught.value).reason == QUEUE_FULL
                assert time.monotonic() < deadline, "the cancelled call kept its place"
        # Neither cancelled call kept (or was handed) the slot: later calls run.
        assert [client.exec(lambda: 7) for _ in range(3)] == [7, 7, 7]


def test_submit_is_refused_at_once_when_nothing_could_wait(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--max-running", "1", "--max-queued-per-namespace", "0")
    with Client(server.address) as client:
        with slot_held(client):
            with pytest.raises(ResourceExhaustedError) as caught:
                client.submit(lambda: 1)
            assert caught.value.reason == QUEUE_FULL and caught.value.retry_after
        assert client.submit(lambda: 2).result(timeout=60) == 2  # room again
