"""Result streams: turn ExecuteUdf responses into record batches as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pyarrow as pa

from tilefn import codec
from tilefn.v1 import udf_service_pb2

from ._exceptions import from_rpc_error
from ._ipc import StreamDecoder


class _Responses:
    """State shared by the sync and async streams: call, task id, decoder, summary."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self.task_id = ""
        self.summary: udf_service_pb2.ExecutionSummary | None = None
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
            self.summary = response.summary
        return []

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
            raise from_rpc_error(error) from None
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
            raise from_rpc_error(error) from None
        self._finish()

    async def value(self) -> Any:
        """Read the whole stream and return the natural Python value."""
        return self.decode([batch async for batch in self])

    async def __aenter__(self) -> AsyncResultStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()
