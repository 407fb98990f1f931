"""Result streams: turn ExecuteUdf responses into record batches as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pyarrow as pa

from tilefn import codec
from tilefn.v1 import udf_service_pb2

from ._exceptions import TilefnError, from_rpc_error
from ._ipc import StreamDecoder


@dataclass(frozen=True)
class Summary:
    """What an execution cost and produced (sent by the server after the result)."""

    task_id: str
    rows: int
    batches: int
    ipc_bytes: int
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int

    @classmethod
    def from_proto(cls, summary: udf_service_pb2.ExecutionSummary) -> Summary:
        return cls(
            task_id=summary.task_id,
            rows=summary.rows,
            batches=summary.batches,
            ipc_bytes=summary.ipc_bytes,
            wall_seconds=summary.wall_time.ToNanoseconds() / 1e9,
            cpu_seconds=summary.cpu_time.ToNanoseconds() / 1e9,
            peak_memory_bytes=summary.peak_memory_bytes,
        )


@dataclass(frozen=True)
class Logs:
    """What the UDF printed (stdout and stderr interleaved): the server keeps the last bytes."""

    text: str
    total_bytes: int
    truncated: bool


def decode_ipc(ipc: bytes) -> Any:
    """The natural Python value of a complete Arrow IPC stream (a CallUdf result)."""
    reader = pa.ipc.open_stream(ipc)
    return codec.decode(reader.schema, list(reader))


class _Responses:
    """State shared by the sync and async streams: call, task id, decoder, logs, summary."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self.task_id = ""
        self.summary: Summary | None = None
        #: What the UDF printed, once the result is complete (None when it printed nothing).
        self.logs: Logs | None = None
        self._decoder = StreamDecoder()

    @property
    def schema(self) -> pa.Schema | None:
        """The result's Arrow schema (with tilefn metadata), once it has arrived."""
        return self._decoder.schema

    def cancel(self) -> None:
        """Cancel the call; the server kills the worker running it."""
        self._call.cancel()

    def _take(self, response: udf_service_pb2.ExecuteUdfResponse) -> list[pa.RecordBatch]:
        kind = response.WhichOneof("kind")
        if kind == "ipc":
            return self._decoder.feed(response.ipc)
        if kind == "task":
            self.task_id = response.task.task_id
        elif kind == "summary":
            self.summary = Summary.from_proto(response.summary)
        elif kind == "logs":
            logs = response.logs
            self.logs = Logs(logs.text, logs.total_bytes, logs.truncated)
        return []

    def _error(self, error: grpc.RpcError) -> TilefnError:
        failure = from_rpc_error(error)
        if self.logs is not None:
            failure.logs = self.logs.text
        return failure

    def _finish(self) -> None:
        self._decoder.close()

    def decode(self, batches: list[pa.RecordBatch]) -> Any:
        """The natural Python value of batches read from this stream (docs/results.md)."""
        assert self.schema is not None
        return codec.decode(self.schema, batches)


class ResultStream(_Responses):
    """The batches of one execution, iterated as they arrive.

    ``for batch in stream`` yields ``pyarrow.RecordBatch``; ``task_id``, ``schema`` and
    ``summary`` fill in as the stream goes. ``cancel()`` stops the execution on the server.
    """

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for response in self._call:
                yield from self._take(response)
        except grpc.RpcError as error:
            raise self._error(error) from None
        self._finish()

    def value(self) -> Any:
        """Read the whole stream and return the natural Python value (docs/results.md)."""
        return self.decode(list(self))

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class AsyncResultStream(_Responses):
    """The asyncio version of :class:`ResultStream`: ``async for batch in stream``."""

    async def __aiter__(self) -> AsyncIterator[pa.RecordBatch]:
        try:
            async for response in self._call:
                for batch in self._take(response):
                    yield batch
        except grpc.RpcError as error:
            raise self._error(error) from None
        self._finish()

    async def value(self) -> Any:
        """Read the whole stream and return the natural Python value."""
        return self.decode([batch async for batch in self])

    async def __aenter__(self) -> AsyncResultStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()
