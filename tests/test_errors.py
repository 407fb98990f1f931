"""Each bad request or failing UDF gets its documented code and reason; the server lives on."""

from __future__ import annotations

import contextlib

import grpc
import numpy as np
import pytest

from tilefn.client import (
    Client,
    InvalidRequestError,
    NotFoundError,
    PythonVersionError,
    ResourceExhaustedError,
    Source,
    TilefnError,
    UdfError,
    WorkerCrashedError,
)
from tilefn.client._exceptions import from_rpc_error
from tilefn.client._request import PYTHON_VERSION
from tilefn.v1 import udf_pb2, udf_service_pb2, udf_service_pb2_grpc

from conftest import ServerProcess, authed_channel

C = grpc.StatusCode


def raw_call(server: ServerProcess, request: udf_service_pb2.ExecuteUdfRequest) -> TilefnError:
    """Send a hand-built request; return the error it must end with."""
    with authed_channel(server.address) as channel:
        stub = udf_service_pb2_grpc.UdfServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ExecuteUdf(request, timeout=60))
    return from_rpc_error(caught.value)


def source(
    text: str, *args: udf_pb2.Argument, **options: object
) -> udf_service_pb2.ExecuteUdfRequest:
    return udf_service_pb2.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text=text)),
        args=list(args),
        options=udf_pb2.ExecutionOptions(**options),  # type: ignore[arg-type]
    )


def check(error: TilefnError, code: grpc.StatusCode, reason: str) -> None:
    assert (error.code, error.reason) == (code, f"ERROR_REASON_{reason}"), str(error)
    assert error.task_id, "every failure names its task"


@pytest.fixture(autouse=True)
def _still_serving(client: Client) -> object:
    """After each failure the same server must still run UDFs normally."""
    yield
    assert client.exec(lambda: 40 + 2) == 42


def test_no_udf(server: ServerProcess) -> None:
    check(raw_call(server, udf_service_pb2.ExecuteUdfRequest()), C.INVALID_ARGUMENT, "UDF_MISSING")


def test_empty_pickle(server: ServerProcess) -> None:
    request = udf_service_pb2.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(pickled=udf_pb2.PickledValue(python_version=PYTHON_VERSION))
    )
    check(raw_call(server, request), C.INVALID_ARGUMENT, "UDF_MISSING")


def test_empty_source(server: ServerProcess) -> None:
    check(raw_call(server, source("  \n")), C.INVALID_ARGUMENT, "UDF_MISSING")


def test_pickle_from_another_python(server: ServerProcess) -> None:
    request = udf_service_pb2.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(pickled=udf_pb2.PickledValue(data=b"\x80\x05.", python_version="3.9"))
    )
    error = raw_call(server, request)
    check(error, C.FAILED_PRECONDITION, "PYTHON_VERSION_MISMATCH")
    assert isinstance(error, PythonVersionError)
    assert error.metadata["client_python"] == "3.9"
    assert "3.9" in error.message and PYTHON_VERSION in error.message


def test_corrupt_pickle(server: ServerProcess) -> None:
    request = udf_service_pb2.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(
            pickled=udf_pb2.PickledValue(data=b"not a pickle", python_version=PYTHON_VERSION)
        )
    )
    check(raw_call(server, request), C.INVALID_ARGUMENT, "UDF_PICKLE_INVALID")


def test_source_that_does_not_compile(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.exec("def f(:\n    return 1\n")
    check(caught.value, C.INVALID_ARGUMENT, "UDF_SOURCE_INVALID")
    assert caught.value.metadata["line"] == "1"


@pytest.mark.parametrize(
    ("udf", "needle"),
    [
        (Source("def f():\n    return 1\n", "g"), "'g'"),
        (Source("def f():\n    return 1\ndef g():\n    return 2\n"), "f, g"),
        (Source("x = 1\n"), "none"),
        (Source("f = 3\n", "f"), "'f'"),
    ],
)
def test_missing_or_ambiguous_entry_point(client: Client, udf: Source, needle: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.exec(udf)
    check(caught.value, C.INVALID_ARGUMENT, "UDF_ENTRY_POINT_MISSING")
    assert needle in caught.value.message


def test_request_over_the_size_limit(client: Client) -> None:
    big = np.zeros((8 << 20) + 4096, dtype=np.uint8)  # the shared server accepts 8 MiB
    with pytest.raises(InvalidRequestError) as caught:
        client.exec(lambda a: a.size, big)
    check(caught.value, C.INVALID_ARGUMENT, "REQUEST_TOO_LARGE")
    assert caught.value.metadata["limit"] == str(8 << 20)


@pytest.mark.parametrize(
    ("argument", "needle"),
    [
        (udf_pb2.Argument(json="{not json"), "json"),
        (udf_pb2.Argument(arrow_ipc=b"\xff\xff\xff\xff garbage"), "arrow"),
        (
            udf_pb2.Argument(
                pickled=udf_pb2.PickledValue(data=b"junk", python_version=PYTHON_VERSION)
            ),
            "pickled",
        ),
        (udf_pb2.Argument(), "no value"),
    ],
)
def test_malformed_arguments(
    server: ServerProcess, argument: udf_pb2.Argument, needle: str
) -> None:
    error = raw_call(server, source("def f(x):\n    return 1\n", argument))
    check(error, C.INVALID_ARGUMENT, "ARGUMENT_INVALID")
    assert error.metadata["argument"] == "args[0]"
    assert needle in error.message


def test_udf_exception_carries_type_message_and_traceback(client: Client) -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    with pytest.raises(UdfError) as caught:
        client.exec(divide, 1, 0)
    error = caught.value
    check(error, C.UNKNOWN, "UDF_RAISED")
    assert error.exception_type == "ZeroDivisionError"
    assert "division by zero" in error.message
    assert "in divide" in error.remote_traceback
    assert "_in_execute" not in error.remote_traceback  # the worker's own frames are hidden


def test_long_exception_message_still_arrives(client: Client) -> None:
    """A message and traceback past gRPC's metadata limit are cut, not lost with the status."""

    def shout() -> None:
        raise ValueError("y" * 20_000)

    with pytest.raises(UdfError) as caught:
        client.exec(shout)
    check(caught.value, C.UNKNOWN, "UDF_RAISED")
    assert caught.value.exception_type == "ValueError"
    assert caught.value.message.startswith("ValueError: yyy")
    assert "chars cut" in caught.value.remote_traceback


def test_source_udf_traceback_quotes_the_source(client: Client) -> None:
    with pytest.raises(UdfError) as caught:
        client.exec(Source("def f(a):\n    return a['missing']\n"), {})
    assert caught.value.exception_type == "KeyError"
    assert 'File "<udf>", line 2, in f' in caught.value.remote_traceback
    assert "return a['missing']" in caught.value.remote_traceback


def test_source_top_level_exception_is_a_udf_error(client: Client) -> None:
    with pytest.raises(UdfError) as caught:
        client.exec(Source("raise KeyError('boom')\ndef f():\n    return 1\n"))
    assert caught.value.exception_type == "KeyError"
    assert "<udf>" in caught.value.remote_traceback


def test_custom_exception_type_is_qualified(client: Client) -> None:
    text = "class Oops(Exception):\n    pass\ndef f():\n    raise Oops('x')\n"
    with pytest.raises(UdfError) as caught:
        client.exec(Source(text, "f"))
    assert caught.value.exception_type == "__udf__.Oops"


def test_generator_that_raises_midway(client: Client) -> None:
    def gen() -> object:
        yield np.arange(3)
        raise ValueError("second item failed")

    with pytest.raises(UdfError) as caught:
        client.exec(gen)
    assert caught.value.exception_type == "ValueError"


def test_unsupported_result_type(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.exec(lambda: {1, 2})
    check(caught.value, C.INVALID_ARGUMENT, "RESULT_TYPE_UNSUPPORTED")
    assert "set" in caught.value.message


def test_worker_that_dies(client: Client) -> None:
    def die() -> None:
        import os

        os._exit(3)

    with pytest.raises(WorkerCrashedError) as caught:
        client.exec(die)
    check(caught.value, C.ABORTED, "WORKER_DIED")
    assert "code 3" in caught.value.message


def test_worker_that_writes_garbage_to_its_channel(client: Client) -> None:
    def scribble() -> None:
        import os

        for fd in range(3, 64):
            with contextlib.suppress(OSError):
                os.write(fd, b"\x09" * 64)

    with pytest.raises(WorkerCrashedError) as caught:
        client.exec(scribble)
    check(caught.value, C.ABORTED, "WORKER_PROTOCOL_VIOLATION")


def test_unknown_registered_udf(server: ServerProcess) -> None:
    request = udf_service_pb2.ExecuteUdfRequest(udf=udf_pb2.UdfSpec(registered="acme/f"))
    error = raw_call(server, request)
    check(error, C.NOT_FOUND, "UDF_NOT_FOUND")
    assert isinstance(error, NotFoundError)


@pytest.mark.parametrize("name", ["acme", "acme/", "/f", "acme/f@0", "acme/f@yesterday", "a/b/c"])
def test_malformed_registered_udf_name(server: ServerProcess, name: str) -> None:
    request = udf_service_pb2.ExecuteUdfRequest(udf=udf_pb2.UdfSpec(registered=name))
    check(raw_call(server, request), C.INVALID_ARGUMENT, "UDF_NAME_INVALID")


def test_unknown_array(server: ServerProcess) -> None:
    request = source("def f(a):\n    return 1\n")
    request.arrays.add(uri="tiledb://acme/weather")
    check(raw_call(server, request), C.NOT_FOUND, "ARRAY_NOT_FOUND")


@pytest.mark.parametrize("size", [10, 64 * 1024 - 1, 4 << 20])
def test_chunk_size_out_of_range(server: ServerProcess, size: int) -> None:
    error = raw_call(server, source("def f():\n    return 1\n", max_chunk_bytes=size))
    check(error, C.INVALID_ARGUMENT, "OPTION_INVALID")
    assert error.metadata["option"] == "max_chunk_bytes"


def test_timeout_above_the_server_maximum(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.with_options(timeout=10**6).exec(lambda: 1)
    check(caught.value, C.INVALID_ARGUMENT, "OPTION_INVALID")


def test_unknown_compression(server: ServerProcess) -> None:
    error = raw_call(server, source("def f():\n    return 1\n", compression=42))
    check(error, C.INVALID_ARGUMENT, "OPTION_INVALID")


def test_result_over_the_byte_limit(client: Client) -> None:
    def endless() -> object:
        import numpy as np

        while True:
            yield np.zeros(1 << 17)  # 1 MiB per item, forever

    with pytest.raises(ResourceExhaustedError) as caught:
        client.with_options(max_result_bytes=8 << 20).exec(endless)
    check(caught.value, C.RESOURCE_EXHAUSTED, "RESULT_TOO_LARGE")
    assert caught.value.metadata["limit_bytes"] == str(8 << 20)
