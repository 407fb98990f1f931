"""Stored results on a shared location: an S3-compatible server on loopback (moto) or a folder
that several replicas share, with one SQLite store between them."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from graph_support import node, ref, run, states, value
from moto.server import ThreadedMotoServer

from tilefn.client import (
    Client,
    NotFoundError,
    ResourceExhaustedError,
    StoredResult,
    TaskFailedError,
)
from tilefn.v1 import graph_service_pb2 as gpb

from conftest import ServerProcess, authed_channel, wait_for

BUCKET = "tilefn-results"
#: The namespace of every caller of a --no-auth server.
NAMESPACE = "anonymous"
#: A result of several upload parts (10 MiB each) and several FetchResult chunks (1 MiB).
ROWS = 3 << 20  # float64: 24 MiB


@dataclass
class S3:
    """The moto server and a client of it."""

    endpoint: str
    client: Any

    def uri(self, prefix: str, **query: str) -> str:
        """``--results-dir`` for ``prefix``: endpoint in the query; credentials from the
        environment unless given."""
        params = {"endpoint_override": self.endpoint, "scheme": "http", **query}
        return f"s3://{BUCKET}/{prefix}?" + "&".join(f"{k}={v}" for k, v in params.items())

    def keys(self, prefix: str) -> dict[str, int]:
        """Object key -> size under ``prefix`` (not pyarrow's empty "folder" markers)."""
        listed = self.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
        return {o["Key"]: o["Size"] for o in listed.get("Contents", []) if o["Key"][-1] != "/"}

    def empty(self, prefix: str) -> bool:
        """No object and no upload in progress under ``prefix``."""
        return not self.keys(prefix) and not self.uploads(prefix)

    def uploads(self, prefix: str) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        listed = self.client.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/")
        return [u["Key"] for u in listed.get("Uploads", [])]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A real S3 API on 127.0.0.1 (moto's server, in a thread of this process); servers find
    their credentials in the standard AWS variables."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "tilefn-test")
        env.setenv("AWS_SECRET_ACCESS_KEY", "tilefn-test-secret")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket=BUCKET)
            yield S3(f"{host}:{port}", client)
        finally:
            server.stop()


@pytest.fixture
def prefix() -> str:
    return f"results-{uuid.uuid4().hex[:8]}"


def key(prefix: str, task_id: str) -> str:
    return f"{prefix}/{NAMESPACE}/{task_id}.arrows"


def ramp(rows: int) -> np.ndarray:
    import numpy as np

    return np.arange(rows, dtype=np.float64)


def total(values: np.ndarray) -> float:
    return float(values.sum())


def test_round_trip_and_reference_through_s3(
    make_server: Callable[..., ServerProcess], tmp_path: Path, s3: S3, prefix: str
) -> None:
    server = make_server(
        *("--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--results-dir", s3.uri(prefix)),
        *("--array-memory-budget", str(16 << 20)),  # server-side inputs of one execution
    )
    with Client(server.address) as client:
        handle = client.submit(ramp, ROWS)
        handle.wait(timeout=120)
        assert client.task(handle.task_id).result_stored
        stream = client.fetch_stream(handle.task_id)
        np.testing.assert_array_equal(stream.value(), np.arange(ROWS, dtype=np.float64))
        sizes = s3.keys(prefix)
        assert list(sizes) == [key(prefix, handle.task_id)]
        assert sizes[key(prefix, handle.task_id)] == stream.summary.ipc_bytes  # type: ignore[union-attr]
        with pytest.raises(ResourceExhaustedError) as too_large:
            client.call(total, StoredResult(handle.task_id))
        assert too_large.value.reason == "ERROR_REASON_ARRAY_READ_TOO_LARGE"
        small = client.submit(ramp, 1000)
        small.wait(timeout=60)
        assert client.call(total, StoredResult(small.task_id)) == 1000 * 999 / 2
    assert not (tmp_path / "results").exists()  # nothing went to the default folder


def test_graph_intermediate_results_live_in_s3(
    make_server: Callable[..., ServerProcess], tmp_path: Path, s3: S3, prefix: str
) -> None:
    server = make_server(
        "--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--results-dir", s3.uri(prefix)
    )
    channel = authed_channel(server.address, ())
    graph = run(
        channel,
        node("a", "def f(n):\n    import numpy as np\n    return np.ones(n)", 2 << 20),
        node("b", "def f(x): return x * 2", ref("a")),
        node("c", "def f(x): return x + 1", ref("a")),
        node("d", "def f(b, c): return float(b.sum() + c.sum())", ref("b"), ref("c")),
    )
    assert gpb.GraphStatus.Name(graph.status) == "GRAPH_STATUS_SUCCEEDED", states(graph)
    assert value(channel, graph, "d") == 4.0 * (2 << 20)
    assert set(s3.keys(prefix)) == {key(prefix, n.task_id) for n in graph.nodes}


def test_failed_and_cancelled_tasks_leave_no_object(
    make_server: Callable[..., ServerProcess], tmp_path: Path, s3: S3, prefix: str
) -> None:
    def fails_midway() -> Iterator[np.ndarray]:
        import numpy as np

        for _ in range(3):
            yield np.ones(1 << 20)  # 8 MiB each: parts are uploaded before the failure
        raise ValueError("midway")

    def stalls_midway() -> Iterator[np.ndarray]:
        import time

        import numpy as np

        for _ in range(3):
            yield np.ones(1 << 20)
        time.sleep(120)
        yield np.ones(1)

    server = make_server(
        "--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--results-dir", s3.uri(prefix)
    )
    with Client(server.address) as client:
        failed = client.submit(fails_midway)
        with pytest.raises(TaskFailedError):
            failed.result(timeout=120)
        wait_for(lambda: s3.empty(prefix), what="the failed task's parts to go")
        stalled = client.submit(stalls_midway)
        wait_for(lambda: bool(s3.uploads(prefix)), timeout=60, what="parts to be uploaded")
        assert not s3.keys(prefix)  # an upload in progress is no object yet
        stalled.cancel()
        assert stalled.wait(timeout=60).status == "CANCELLED"
    wait_for(lambda: s3.empty(prefix), what="the objects to go")


def test_ttl_expiry_deletes_the_object(
    make_server: Callable[..., ServerProcess], tmp_path: Path, s3: S3, prefix: str
) -> None:
    flags = ("--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--results-dir", s3.uri(prefix))
    first = make_server(*flags)
    with Client(first.address) as client:
        stream = client.with_options(store_result=True, result_ttl=0.5).stream(ramp, 1000)
        stream.value()
        task_id = stream.task_id
    assert key(prefix, task_id) in s3.keys(prefix)  # type: ignore[arg-type]
    time.sleep(0.6)  # the TTL itself has to pass
    second = make_server(*flags)  # a replica sweeps expired results as it starts
    wait_for(lambda: not s3.keys(prefix), what="the sweep to delete the object")
    for replica in (first, second):
        with Client(replica.address) as client, pytest.raises(NotFoundError) as expired:
            client.fetch(task_id)  # type: ignore[arg-type]
        assert "expired" in str(expired.value)


def succeeded(client: Client, task_id: str) -> bool:
    """Whether this replica sees the task succeeded (its record may not be written yet)."""
    try:
        return client.task(task_id).status == "SUCCEEDED"
    except NotFoundError:
        return False


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_replicas_share_stored_results(
    make_server: Callable[..., ServerProcess],
    tmp_path: Path,
    s3: S3,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    if where == "s3":  # the endpoint from the standard variable this time
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3.endpoint}")
        results = f"s3://{BUCKET}/{prefix}"
    else:
        results = str(tmp_path / "shared-results")
    flags = ("--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--results-dir", results)
    one, two = make_server(*flags), make_server(*flags)
    with Client(one.address) as first, Client(two.address) as second:
        handle = first.submit(ramp, ROWS)
        handle.wait(timeout=120)
        # The other replica learns of the end once the first one's writer flushed (<= 0.5 s).
        wait_for(lambda: succeeded(second, handle.task_id), what="the record")
        np.testing.assert_array_equal(second.fetch(handle.task_id), ramp(ROWS))
        assert second.call(total, StoredResult(handle.task_id)) == ROWS * (ROWS - 1) / 2
        back = second.submit(ramp, 10)
        back.wait(timeout=60)
        wait_for(lambda: succeeded(first, back.task_id), what="the record")
        np.testing.assert_array_equal(first.fetch(back.task_id), ramp(10))
    if where == "s3":
        assert set(s3.keys(prefix)) == {key(prefix, handle.task_id), key(prefix, back.task_id)}
    else:
        stored = {p.name for p in (tmp_path / "shared-results" / NAMESPACE).iterdir()}
        assert stored == {f"{handle.task_id}.arrows", f"{back.task_id}.arrows"}


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ("ftp://host/results", "unsupported scheme 'ftp'"),
        ("s3:///results", "names no bucket"),
        ("{s3}/x?bogus=1", "bogus"),
        ("s3://no-such-bucket/x?endpoint_override={endpoint}&scheme=http", "no-such-bucket"),
        (
            "s3://AKIDTEST:NOT-TO-BE-SHOWN@tilefn-results/x?endpoint_override=127.0.0.1:1"
            "&scheme=http",
            "127.0.0.1:1",
        ),
        ("s3://AKIDTEST:NOT-TO-BE-SHOWN@bad bucket/x", "Cannot parse URI"),
        ("{file}/under", "cannot write there"),
    ],
)
def test_bad_results_location_fails_at_start(
    tmp_path: Path, s3: S3, results: str, message: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    results = results.format(s3=f"s3://{BUCKET}", endpoint=s3.endpoint, file=a_file)
    command = [sys.executable, "-m", "tilefn.server", "--port", "0", "--no-auth"]
    flags = ["--store", str(tmp_path / "s.sqlite3"), "--results-dir", results]
    done = subprocess.run(
        [*command, *flags], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "tilefn: cannot start: --results-dir" in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    assert "NOT-TO-BE-SHOWN" not in done.stderr + done.stdout
    assert "serving" not in done.stdout
