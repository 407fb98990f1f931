"""Client and AsyncClient: run UDFs on a tilefn server."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, Self

import grpc

from tilefn.v1 import udf_service_pb2, udf_service_pb2_grpc

from ._request import Options, Udf, build_request
from ._result import AsyncResultStream, ResultStream

ChannelOptions = Sequence[tuple[str, Any]]
DEFAULT_CHANNEL_OPTIONS: ChannelOptions = (("grpc.max_receive_message_length", 16 << 20),)


class _ClientBase:
    """What both clients share: a channel, a stub, default per-call options."""

    def __init__(self, channel: Any, options: Options | None) -> None:
        self._channel = channel
        self._stub = udf_service_pb2_grpc.UdfServiceStub(channel)
        self.options = options or Options()

    def with_options(self, **changes: Any) -> Self:
        """A client sharing this one's channel with some options changed (see ``Options``)."""
        clone = copy.copy(self)
        clone.options = dataclasses.replace(self.options, **changes)
        return clone

    def _call(self, fn: Udf, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request: udf_service_pb2.ExecuteUdfRequest = build_request(fn, args, kwargs, self.options)
        return self._stub.ExecuteUdf(request, timeout=self.options.deadline())


class Client(_ClientBase):
    """A synchronous tilefn client.

    >>> with Client("127.0.0.1:50051") as client:
    ...     client.exec(lambda n: n + 1, 41)
    42

    ``target`` is any gRPC target ("host:port", "dns:///name:port",
    "ipv4:127.0.0.1:1,127.0.0.1:2"); ``options`` applies to every call unless
    ``with_options`` overrides it.
    """

    def __init__(
        self,
        target: str,
        *,
        options: Options | None = None,
        channel_options: ChannelOptions = DEFAULT_CHANNEL_OPTIONS,
        channel: grpc.Channel | None = None,
    ) -> None:
        super().__init__(channel or grpc.insecure_channel(target, list(channel_options)), options)

    def exec(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the server and return its result as a Python value."""
        return self.stream(fn, *args, **kwargs).value()

    def stream(self, fn: Udf, /, *args: Any, **kwargs: Any) -> ResultStream:
        """Run ``fn(*args, **kwargs)``; iterate the result's record batches as they arrive."""
        return ResultStream(self._call(fn, args, kwargs))

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """The asyncio tilefn client; same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        target: str,
        *,
        options: Options | None = None,
        channel_options: ChannelOptions = DEFAULT_CHANNEL_OPTIONS,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        super().__init__(
            channel or grpc.aio.insecure_channel(target, list(channel_options)), options
        )

    async def exec(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the server and return its result as a Python value."""
        return await self.stream(fn, *args, **kwargs).value()

    def stream(self, fn: Udf, /, *args: Any, **kwargs: Any) -> AsyncResultStream:
        """Run ``fn(*args, **kwargs)``; ``async for`` over the result's record batches."""
        return AsyncResultStream(self._call(fn, args, kwargs))

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
