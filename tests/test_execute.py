"""ExecuteUdf end to end: real server, real workers, results streamed as Arrow IPC."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import tilefn
from tilefn.client import AsyncClient, Client, Source
from tilefn.client._request import PYTHON_VERSION, Options, build_request
from tilefn.v1 import udf_service_pb2_grpc

from conftest import ServerProcess, authed_channel

ROOT = Path(__file__).resolve().parent.parent


def same(got: Any, want: Any) -> None:
    """Equal value, and for numpy the same dtype and shape."""
    if isinstance(want, np.ndarray | np.generic):
        assert type(got) is type(want), (type(got), type(want))
        assert got.dtype == want.dtype and np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict) and want and all(isinstance(v, np.ndarray) for v in want.values()):
        assert list(got) == list(want)
        for key in want:
            same(got[key], want[key])
    elif isinstance(want, pa.Table | pa.RecordBatch):
        assert type(got) is type(want) and got.equals(want)
    else:
        assert type(got) is type(want) and got == want


VALUES: dict[str, Any] = {
    "int": 7,
    "float": 2.5,
    "bool": True,
    "str": "héllo",
    "bytes": b"\x00\x01",
    "none": None,
    "json": {"a": [1, 2, {"b": None}], "c": "d"},
    "list": [1, "two", 3.0],
    "0d": np.array(3.5),
    "1d-f8": np.arange(10, dtype=np.float64),
    "3d-i2": np.arange(24, dtype=np.int16).reshape(2, 3, 4),
    "u8": np.array([0, 2**64 - 1], dtype=np.uint64),
    "bool-array": np.array([True, False, True]),
    "complex": np.array([1 + 2j, -3j], dtype=np.complex128),
    "datetime": np.array(["2026-01-01", "NaT"], dtype="datetime64[ms]"),
    "days": np.array(["2026-01-01"], dtype="datetime64[D]"),
    "strings": np.array(["a", "bcd"]),
    "np-scalar": np.float32(1.25),
    "dict": {"x": np.arange(3), "y": np.ones((3, 2))},
    "table": pa.table({"a": [1, 2], "b": ["x", "y"]}),
    "batch": pa.record_batch({"a": [1.5]}),
}


@pytest.mark.parametrize("name", list(VALUES))
def test_round_trip(client: Client, name: str) -> None:
    value = VALUES[name]
    same(client.exec(lambda: value), value)


@pytest.mark.parametrize("name", ["1d-f8", "3d-i2", "json", "table", "strings", "dict"])
def test_arguments_round_trip(client: Client, name: str) -> None:
    value = VALUES[name]
    same(client.exec(lambda v: v, value), value)


def test_dataframe_round_trip(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "c": pd.Categorical(["x", "y", "x"])})
    got = client.exec(lambda df: df.assign(b=df.a * 2), frame)
    pd.testing.assert_frame_equal(got, frame.assign(b=frame.a * 2))


def test_generator_result_is_concatenated(client: Client) -> None:
    def chunks(n: int) -> Any:
        for i in range(n):
            yield np.full((2, 3), i, dtype=np.int32)

    got = client.exec(chunks, 4)
    same(got, np.concatenate([np.full((2, 3), i, dtype=np.int32) for i in range(4)]))


def test_generator_of_scalars_is_a_list(client: Client) -> None:
    assert client.exec(lambda: (i * i for i in range(4))) == [0, 1, 4, 9]


def test_arguments_kwargs_and_pickled_values(client: Client) -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    def f(a: np.ndarray, p: Point, *, scale: float, tag: str) -> dict[str, Any]:
        return {"sum": float(a.sum()) * scale + p.x, "tag": tag}

    got = client.exec(f, np.arange(4), Point(1), scale=2.0, tag="t")
    assert got == {"sum": 13.0, "tag": "t"}


def test_source_udfs(client: Client) -> None:
    text = (
        "import numpy as np\n\n"
        "def helper(n):\n    return n\n\n"
        "def main(n):\n    return np.arange(helper(n))\n"
    )
    same(client.exec(Source(text, "main"), 3), np.arange(3))
    same(client.exec("def only(x):\n    return x * 2\n", 21), 42)


def test_stream_is_one_ipc_stream_in_bounded_chunks(server: ServerProcess) -> None:
    """The raw protocol: task first, ipc pieces <= max_chunk_bytes that concatenate to a stream."""
    chunk = 64 * 1024
    value = np.random.default_rng(0).random(300_000)
    request = build_request(lambda: value, (), {}, Options(max_chunk_bytes=chunk))
    with authed_channel(server.address) as channel:
        responses = list(
            udf_service_pb2_grpc.UdfServiceStub(channel).ExecuteUdf(request, timeout=60)
        )
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds[0] == "task" and kinds[-1] == "summary" and set(kinds[1:-1]) == {"ipc"}
    pieces = [r.ipc for r in responses[1:-1]]
    assert len(pieces) > 10 and max(map(len, pieces)) <= chunk
    table = pa.ipc.open_stream(b"".join(pieces)).read_all()
    np.testing.assert_array_equal(table.column("values").to_numpy(), value)
    summary = responses[-1].summary
    assert summary.task_id == responses[0].task.task_id
    assert summary.rows == len(value) and summary.ipc_bytes == sum(map(len, pieces))


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_results(client: Client, compression: str) -> None:
    value = np.zeros(1_000_000)
    stream = client.with_options(compression=compression).stream(lambda: value)
    batches = list(stream)
    same(stream.decode(batches), value)
    assert stream.summary is not None and stream.summary.ipc_bytes < value.nbytes / 10


@pytest.mark.timeout(120)
def test_generator_results_stream_as_produced(client: Client) -> None:
    """The first batch arrives while the generator is still blocked on its second item."""

    def slow() -> Any:
        import time

        yield np.arange(5)
        time.sleep(3600)
        yield np.arange(5)

    with client.stream(slow) as stream:
        first = next(iter(stream))
    np.testing.assert_array_equal(first.column(0).to_numpy(), np.arange(5))


def test_async_client(server: ServerProcess) -> None:
    async def run() -> tuple[Any, list[int]]:
        async with AsyncClient(server.address) as client:
            value = await client.exec(np.arange, 5)
            rows = [
                b.num_rows async for b in client.stream(lambda: (np.arange(2) for _ in range(3)))
            ]
            return value, rows

    value, rows = asyncio.run(run())
    same(value, np.arange(5))
    assert rows == [2, 2, 2]


def test_cli_exec(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "result.arrow"
    command = [sys.executable, "-m", "tilefn.client._cli", "exec", str(ROOT / "examples/hello.py")]
    command += ["--arg", "4", "--target", server.address, "--ipc-out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[0 1 4 9]"
    assert pa.ipc.open_stream(out.read_bytes()).read_all().num_rows == 4


def test_cli_reports_udf_errors(server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("def f(x):\n    print('dividing', x)\n    return x / 0\n")
    command = [sys.executable, "-m", "tilefn.client._cli", "exec", str(script), "-a", "1"]
    result = subprocess.run(
        [*command, "-t", server.address], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr and "ERROR_REASON_UDF_RAISED" in result.stderr
    assert result.stderr.startswith("dividing 1\n")


def test_health_and_reflection(server: ServerProcess) -> None:
    with authed_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tilefn.v1.UdfService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in reply.list_services_response.service}
    assert {"tilefn.v1.UdfService", "tilefn.v1.ArrayService", "grpc.health.v1.Health"} <= names
    assert "tilefn.v1.ServerInfoService" in names


def test_summary_and_task_id(client: Client) -> None:
    stream = client.stream(lambda: np.ones(1000))
    list(stream)
    assert len(stream.task_id) == 32 and stream.summary is not None
    assert stream.summary.rows == 1000 and stream.summary.peak_memory_bytes > 0
    assert stream.summary.task_id == stream.task_id and stream.summary.wall_seconds > 0


def test_server_info(client: Client) -> None:
    info = client.server_info()
    assert info["version"] == tilefn.__version__
    assert info["python_version"] == PYTHON_VERSION
    sandbox = info["sandbox"]
    assert sandbox["mode"] == "strict" and "unavailable_layers" not in sandbox
    expected = {
        "filesystem",
        "distinct_uid",
        "seccomp",
        "cgroups",
        "capabilities_dropped",
        "landlock",
    }
    assert expected <= set(sandbox["active_layers"])
    limits = info["limits"]
    assert limits["max_request_bytes"] == str(8 << 20)  # the shared server's flag
    assert limits["default_timeout"] == "300s" and limits["min_chunk_bytes"] == 64 * 1024
    # admission: derived from the pool (--max-workers 8 by default) and the queue defaults
    assert (limits["max_running"], limits["max_running_per_namespace"]) == (8, 8)
    assert (limits["max_queued"], limits["max_queued_per_namespace"]) == (256, 64)


def test_helpers_from_the_callers_other_modules_travel_by_value(client: Client) -> None:
    from hostile_support import outcome  # a local module the server cannot import

    assert client.exec(lambda: outcome(lambda: None)) == "allowed"
