"""The server under test: one grpc.aio channel (plaintext or TLS), the token as call metadata.

Calls go through the generated stub rather than ``AsyncClient`` because every call must carry
the ``authorization`` metadata, and because the harness only needs each call's status and
size: decoding result values would spend the load generator's CPU on work the server is not
measured for. Errors are read with the client's one translator (``from_rpc_error``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from tilefn.client._channel import make_channel
from tilefn.client._exceptions import from_rpc_error
from tilefn.v1 import server_info_pb2, server_info_pb2_grpc, udf_service_pb2, udf_service_pb2_grpc

from ._config import TargetConfig

_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 16 << 20),)


@dataclass(frozen=True)
class Outcome:
    """How one call ended."""

    #: "OK" or the gRPC status code name, e.g. "UNKNOWN", "DEADLINE_EXCEEDED".
    code: str
    #: The tilefn ErrorInfo reason, e.g. "ERROR_REASON_UDF_RAISED"; "" when none.
    reason: str = ""
    #: Arrow IPC bytes received.
    ipc_bytes: int = 0


class TargetUnreachableError(Exception):
    """The target did not accept a connection in time."""


class Target:
    """Calls ExecuteUdf on one target; use as ``async with Target(config) as target``."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self._channel = open_channel(config)
        self._stub = udf_service_pb2_grpc.UdfServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()

    async def wait_ready(self, timeout: float) -> None:
        """Connect, or raise TargetUnreachableError after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise TargetUnreachableError(
                f"no tilefn server answered at {self.config.address} within {timeout:g} s"
            ) from None

    async def server_info(self) -> dict[str, Any]:
        """The server's GetServerInfo answer as a dict; {} if it has no such service."""
        stub = server_info_pb2_grpc.ServerInfoServiceStub(self._channel)
        try:
            reply = await stub.GetServerInfo(
                server_info_pb2.GetServerInfoRequest(), timeout=10, metadata=self._metadata
            )
        except grpc.aio.AioRpcError:
            return {}
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    async def execute(self, request: udf_service_pb2.ExecuteUdfRequest, timeout: float) -> Outcome:
        """Run one request to its end, reading (not decoding) the result stream."""
        call = self._stub.ExecuteUdf(request, timeout=timeout, metadata=self._metadata)
        size = 0
        try:
            async for response in call:
                if response.WhichOneof("kind") == "ipc":
                    size += len(response.ipc)
        except grpc.aio.AioRpcError as error:
            return Outcome(error.code().name, from_rpc_error(error).reason, size)
        return Outcome("OK", "", size)

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> Target:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def open_channel(config: TargetConfig) -> grpc.aio.Channel:
    """A channel to the target (the client's ``make_channel``): plaintext, TLS or mutual TLS.

    The flags already folded the TILEFN_TLS_* variables into ``config``, so TLS is on or off
    exactly as the report says.
    """
    options: list[tuple[str, Any]] = list(_CHANNEL_OPTIONS)
    if config.lb_policy:
        options.append(("grpc.lb_policy_name", config.lb_policy))
    if not config.tls:
        return make_channel(config.address, aio=True, channel_options=options, tls=False)
    return make_channel(
        config.address,
        aio=True,
        channel_options=options,
        tls=True,
        root_certificates=config.ca_cert,
        client_certificate=config.client_cert,
        client_key=config.client_key,
        server_name_override=config.tls_server_name or None,
    )
