"""Client and AsyncClient: run UDFs on a tilefn server."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, Self

import grpc
from google.protobuf import json_format

from tilefn import _malloc
from tilefn.v1 import (
    array_service_pb2,
    array_service_pb2_grpc,
    graph_service_pb2_grpc,
    registry_service_pb2_grpc,
    server_info_pb2,
    server_info_pb2_grpc,
    udf_service_pb2,
    udf_service_pb2_grpc,
)

from ._arrays import ArrayInfo, ArrayRead, as_read, schema_dict
from ._channel import ChannelOptions, PemSource, make_channel
from ._exceptions import from_rpc_error
from ._graph_calls import AsyncGraphCalls, GraphCalls
from ._registry_calls import AsyncRegistryCalls, RegistryCalls
from ._request import Options, Udf, build_request
from ._result import AsyncResultStream, ResultStream, decode_ipc
from ._task_calls import AsyncTaskCalls, TaskCalls

DEFAULT_CHANNEL_OPTIONS: ChannelOptions = (("grpc.max_receive_message_length", 16 << 20),)
#: Seconds a registry or catalog call may take.
METADATA_TIMEOUT = 30.0


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata carrying ``token`` (or $TILEFN_TOKEN); empty when there is none."""
    token = os.environ.get("TILEFN_TOKEN", "") if token is None else token
    return (("authorization", f"Bearer {token.strip()}"),) if token.strip() else ()


class _ClientBase:
    """What both clients share: a channel, a stub, default per-call options."""

    def __init__(self, channel: Any, options: Options | None, token: str | None) -> None:
        _malloc.tune()  # large result messages would otherwise fault in fresh pages each time
        self._channel = channel
        self._metadata = auth_metadata(token)
        self._udf = udf_service_pb2_grpc.UdfServiceStub(channel)
        self._arrays = array_service_pb2_grpc.ArrayServiceStub(channel)
        self._registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._info = server_info_pb2_grpc.ServerInfoServiceStub(channel)
        self._graph_stub = graph_service_pb2_grpc.GraphServiceStub(channel)
        self.options = options or Options()

    def with_options(self, **changes: Any) -> Self:
        """A client sharing this one's channel with some options changed (see ``Options``)."""
        clone = copy.copy(self)
        clone.options = dataclasses.replace(self.options, **changes)
        return clone

    def _request(
        self,
        fn: Udf,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        arrays: Sequence[ArrayRead] = (),
    ) -> udf_service_pb2.ExecuteUdfRequest:
        return build_request(fn, args, kwargs, self.options, arrays)

    def _call(
        self,
        fn: Udf,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        arrays: Sequence[ArrayRead] = (),
    ) -> Any:
        request = self._request(fn, args, kwargs, arrays)
        return self._udf.ExecuteUdf(
            request, timeout=self.options.deadline(), metadata=self._metadata
        )

    def _schema_request(self, array: str) -> array_service_pb2.GetArraySchemaRequest:
        return array_service_pb2.GetArraySchemaRequest(uri=array)


class Client(TaskCalls, RegistryCalls, GraphCalls, _ClientBase):
    """A synchronous tilefn client.

    >>> with Client("127.0.0.1:50051") as client:
    ...     client.exec(lambda n: n + 1, 41)
    42

    ``target`` is any gRPC target ("host:port", "dns:///name:port",
    "ipv4:127.0.0.1:1,127.0.0.1:2"); ``options`` applies to every call unless
    ``with_options`` overrides it.

    Transport security: ``tls=True`` trusts ``root_certificates`` (PEM bytes or a path; default
    ``TILEFN_TLS_CA``, else the system roots); ``client_certificate`` and ``client_key`` are
    the identity for mutual TLS (default ``TILEFN_CLIENT_CERT``/``TILEFN_CLIENT_KEY``). Giving any
    certificate, or setting ``TILEFN_TLS_CA``, implies TLS; ``tls=False`` forces plaintext.
    ``server_name_override`` checks the server certificate against another name (development).
    A ``channel`` is used as is: ``target`` and the TLS settings are then ignored.
    """

    def __init__(
        self,
        target: str,
        *,
        options: Options | None = None,
        channel_options: ChannelOptions = DEFAULT_CHANNEL_OPTIONS,
        channel: grpc.Channel | None = None,
        token: str | None = None,
        tls: bool | None = None,
        root_certificates: PemSource | None = None,
        client_certificate: PemSource | None = None,
        client_key: PemSource | None = None,
        server_name_override: str | None = None,
    ) -> None:
        if channel is None:
            channel = make_channel(
                target,
                aio=False,
                channel_options=channel_options,
                tls=tls,
                root_certificates=root_certificates,
                client_certificate=client_certificate,
                client_key=client_key,
                server_name_override=server_name_override,
            )
        super().__init__(channel, options, token)

    def exec(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the server and return its result as a Python value."""
        return self.stream(fn, *args, **kwargs).value()

    def call(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Like ``exec`` in one unary round trip: the lowest latency, for small results.

        A result larger than the server's ``max_unary_result_bytes`` (3 MiB by default) fails
        with ``ResourceExhaustedError`` (``ERROR_REASON_RESULT_TOO_LARGE``): use ``exec``.
        """
        request = self._request(fn, args, kwargs)
        try:
            reply = self._udf.CallUdf(
                request, timeout=self.options.deadline(), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return decode_ipc(reply.ipc)

    def stream(self, fn: Udf, /, *args: Any, **kwargs: Any) -> ResultStream:
        """Run ``fn(*args, **kwargs)``; iterate the result's record batches as they arrive."""
        return ResultStream(self._call(fn, args, kwargs))

    def apply(
        self,
        array: str | ArrayRead,
        fn: Udf,
        /,
        *args: Any,
        ranges: Sequence[Any] | None = None,
        attrs: Sequence[str] = (),
        layout: str | None = None,
        condition: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Read a slice of ``array`` on the server and return ``fn(data, *args, **kwargs)``.

        ``data`` is an ordered dict of numpy arrays keyed by attribute and dimension name.
        """
        read = _read(array, ranges, attrs, layout, condition)
        return ResultStream(self._call(fn, args, kwargs, [read])).value()

    def apply_multi(
        self, arrays: Sequence[str | ArrayRead], fn: Udf, /, *args: Any, **kwargs: Any
    ) -> Any:
        """Read several arrays; ``fn`` gets a list of their dicts as its first argument."""
        return ResultStream(self._call(fn, args, kwargs, [as_read(a) for a in arrays])).value()

    def arrays(self, namespace: str = "") -> list[ArrayInfo]:
        """The arrays this caller may read."""
        found: list[ArrayInfo] = []
        token = ""
        while True:
            request = array_service_pb2.ListArraysRequest(namespace=namespace, page_token=token)
            try:
                page = self._arrays.ListArrays(
                    request, timeout=self.options.deadline(), metadata=self._metadata
                )
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None
            found += [ArrayInfo(a.uri, a.namespace, a.sparse) for a in page.arrays]
            if not (token := page.next_page_token):
                return found

    def server_info(self) -> dict[str, Any]:
        """The server's version, worker Python version, sandbox layers and limits."""
        try:
            reply = self._info.GetServerInfo(
                server_info_pb2.GetServerInfoRequest(),
                timeout=METADATA_TIMEOUT,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    def schema(self, array: str) -> dict[str, Any]:
        """An array's schema: dimensions (with domains), attributes, cell order, sparsity."""
        try:
            reply = self._arrays.GetArraySchema(
                self._schema_request(array), timeout=METADATA_TIMEOUT, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return schema_dict(reply.schema)

    def _unary(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=METADATA_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(AsyncTaskCalls, AsyncRegistryCalls, AsyncGraphCalls, _ClientBase):
    """The asyncio tilefn client; same constructor and methods as :class:`Client`, awaited."""

    def __init__(
        self,
        target: str,
        *,
        options: Options | None = None,
        channel_options: ChannelOptions = DEFAULT_CHANNEL_OPTIONS,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
        tls: bool | None = None,
        root_certificates: PemSource | None = None,
        client_certificate: PemSource | None = None,
        client_key: PemSource | None = None,
        server_name_override: str | None = None,
    ) -> None:
        if channel is None:
            channel = make_channel(
                target,
                aio=True,
                channel_options=channel_options,
                tls=tls,
                root_certificates=root_certificates,
                client_certificate=client_certificate,
                client_key=client_key,
                server_name_override=server_name_override,
            )
        super().__init__(channel, options, token)

    async def exec(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the server and return its result as a Python value."""
        return await self.stream(fn, *args, **kwargs).value()

    async def call(self, fn: Udf, /, *args: Any, **kwargs: Any) -> Any:
        """Like ``exec`` in one unary round trip (see :meth:`Client.call`)."""
        request = self._request(fn, args, kwargs)
        try:
            reply = await self._udf.CallUdf(
                request, timeout=self.options.deadline(), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return decode_ipc(reply.ipc)

    def stream(self, fn: Udf, /, *args: Any, **kwargs: Any) -> AsyncResultStream:
        """Run ``fn(*args, **kwargs)``; ``async for`` over the result's record batches."""
        return AsyncResultStream(self._call(fn, args, kwargs))

    async def apply(
        self,
        array: str | ArrayRead,
        fn: Udf,
        /,
        *args: Any,
        ranges: Sequence[Any] | None = None,
        attrs: Sequence[str] = (),
        layout: str | None = None,
        condition: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Read a slice of ``array`` on the server and return ``fn(data, *args, **kwargs)``."""
        read = _read(array, ranges, attrs, layout, condition)
        return await AsyncResultStream(self._call(fn, args, kwargs, [read])).value()

    async def apply_multi(
        self, arrays: Sequence[str | ArrayRead], fn: Udf, /, *args: Any, **kwargs: Any
    ) -> Any:
        """Read several arrays; ``fn`` gets a list of their dicts as its first argument."""
        call = self._call(fn, args, kwargs, [as_read(a) for a in arrays])
        return await AsyncResultStream(call).value()

    async def schema(self, array: str) -> dict[str, Any]:
        """An array's schema (see ``Client.schema``)."""
        try:
            reply = await self._arrays.GetArraySchema(
                self._schema_request(array), timeout=METADATA_TIMEOUT, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return schema_dict(reply.schema)

    async def _unary(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return await method(request, timeout=METADATA_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _read(
    array: str | ArrayRead,
    ranges: Sequence[Any] | None,
    attrs: Sequence[str],
    layout: str | None,
    condition: str | None,
) -> ArrayRead:
    if isinstance(array, ArrayRead):
        return array
    return ArrayRead(array, ranges, tuple(attrs), layout, condition)
