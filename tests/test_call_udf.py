"""CallUdf: the unary form of ExecuteUdf (whole result in one response)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tilefn.client import AsyncClient, Client, ResourceExhaustedError, Source, UdfError
from tilefn.client._request import Options, build_request
from tilefn.server._udf_service import ipc_response
from tilefn.v1 import udf_service_pb2, udf_service_pb2_grpc

from conftest import ServerProcess, authed_channel


@pytest.mark.parametrize(
    "value",
    [1, "text", None, {"a": [1, 2]}, np.arange(12, dtype=np.int32).reshape(3, 4)],
    ids=["int", "str", "none", "json", "ndarray"],
)
def test_call_returns_what_exec_returns(client: Client, value: Any) -> None:
    got, want = client.call(lambda v: v, value), client.exec(lambda v: v, value)
    if isinstance(value, np.ndarray):
        assert got.dtype == want.dtype and np.array_equal(got, want) and np.array_equal(got, value)
    else:
        assert got == want == value


def test_call_with_source_and_async(server: ServerProcess) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(server.address) as client:
            return list(await asyncio.gather(*(client.call(lambda i=i: i * i) for i in range(8))))

    assert asyncio.run(main()) == [i * i for i in range(8)]
    with Client(server.address) as client:
        assert client.call(Source("def f(x):\n    return x + 1\n"), 41) == 42


def test_response_carries_task_id_summary_and_logs(server: ServerProcess) -> None:
    def chatty() -> int:
        print("hello from the worker")
        return 3

    request = build_request(chatty, (), {}, Options())
    with authed_channel(server.address) as channel:
        reply = udf_service_pb2_grpc.UdfServiceStub(channel).CallUdf(request, timeout=30)
    assert len(reply.task_id) == 32
    assert reply.summary.task_id == reply.task_id and reply.summary.rows == 1
    assert reply.logs.text == "hello from the worker\n" and not reply.logs.truncated
    table = pa.ipc.open_stream(reply.ipc).read_all()
    assert table.column(0).to_pylist() == [3]


def test_result_over_the_unary_limit_is_refused(client: Client) -> None:
    limit = int(client.server_info()["limits"]["max_unary_result_bytes"])
    with pytest.raises(ResourceExhaustedError) as caught:
        client.call(lambda n: np.zeros(n, dtype=np.uint8), limit + 1)
    assert caught.value.reason == "ERROR_REASON_RESULT_TOO_LARGE"
    assert caught.value.metadata["limit_bytes"] == str(limit)
    assert client.exec(lambda n: np.zeros(n, dtype=np.uint8), limit + 1).size == limit + 1


def test_failure_keeps_what_the_udf_printed(client: Client) -> None:
    def fails() -> None:
        print("about to fail")
        raise ValueError("nope")

    with pytest.raises(UdfError) as caught:
        client.call(fails)
    assert "ValueError: nope" in caught.value.remote_traceback
    assert caught.value.logs == "about to fail\n"
    assert caught.value.task_id


def test_failure_after_much_output_still_arrives(client: Client) -> None:
    """The status details carry the end of the logs; all of them would not pass gRPC's limit."""

    def fails() -> None:
        print("x" * 100_000)
        print("last words")
        raise ValueError("nope")

    with pytest.raises(UdfError) as caught:
        client.call(fails)
    assert caught.value.logs.endswith("last words\n")
    assert "ValueError: nope" in caught.value.remote_traceback


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, (1 << 20) + 7])
def test_prebuilt_ipc_messages_parse_as_protobuf(size: int) -> None:
    piece = bytes(range(256)) * (size // 256) + bytes(size % 256)
    parsed = udf_service_pb2.ExecuteUdfResponse.FromString(ipc_response(piece))
    assert parsed.WhichOneof("kind") == "ipc" and parsed.ipc == piece
    assert ipc_response(piece) == udf_service_pb2.ExecuteUdfResponse(ipc=piece).SerializeToString()
