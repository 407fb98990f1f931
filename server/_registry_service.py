"""RegistryService: register, version, share and delete named UDFs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
from google.protobuf import json_format

from tilefn.v1 import registry_service_pb2 as pb
from tilefn.v1 import registry_service_pb2_grpc, udf_pb2

from ._auth import Authenticator, Principal
from ._registry import Registry
from ._request import page_size
from ._status import unary_status_mapped
from ._store import UdfVersion
from ._times import timestamp_us

Context = grpc.aio.ServicerContext[Any, Any]


class RegistryService(registry_service_pb2_grpc.RegistryServiceServicer):
    """Serves tilefn.v1.RegistryService."""

    def __init__(self, auth: Authenticator, registry: Registry) -> None:
        self._auth = auth
        self._registry = registry

    def _caller(self, context: Context) -> Principal:
        return self._auth.principal(context)

    @unary_status_mapped
    async def RegisterUdf(
        self, request: pb.RegisterUdfRequest, context: Context
    ) -> pb.RegisteredUdf:
        caller = self._caller(context)
        version = await asyncio.to_thread(
            self._registry.register, caller, request.namespace, request.name, request.definition
        )
        return to_message(version, caller)

    @unary_status_mapped
    async def UpdateUdf(self, request: pb.UpdateUdfRequest, context: Context) -> pb.RegisteredUdf:
        caller = self._caller(context)
        version = await asyncio.to_thread(
            self._registry.update, caller, request.name, request.definition
        )
        return to_message(version, caller)

    @unary_status_mapped
    async def GetUdf(self, request: pb.GetUdfRequest, context: Context) -> pb.RegisteredUdf:
        caller = self._caller(context)
        version = await asyncio.to_thread(self._registry.resolve, caller, request.name)
        return to_message(version, caller, include_pickle=request.include_pickle)

    @unary_status_mapped
    async def ListUdfs(self, request: pb.ListUdfsRequest, context: Context) -> pb.ListUdfsResponse:
        caller = self._caller(context)
        size = page_size(request.page_size)
        found = await asyncio.to_thread(self._registry.list, caller, request, size + 1)
        page = found[:size]
        token = f"{page[-1].namespace}/{page[-1].name}" if len(found) > size else ""
        return pb.ListUdfsResponse(
            udfs=[to_message(v, caller) for v in page], next_page_token=token
        )

    @unary_status_mapped
    async def ShareUdf(self, request: pb.ShareUdfRequest, context: Context) -> pb.RegisteredUdf:
        return await self._share(request.name, request.grantee, True, context)

    @unary_status_mapped
    async def UnshareUdf(self, request: pb.UnshareUdfRequest, context: Context) -> pb.RegisteredUdf:
        return await self._share(request.name, request.grantee, False, context)

    async def _share(
        self, name: str, grantee: str, share: bool, context: Context
    ) -> pb.RegisteredUdf:
        caller = self._caller(context)
        version = await asyncio.to_thread(self._registry.share, caller, name, grantee, share)
        return to_message(version, caller)

    @unary_status_mapped
    async def DeleteUdf(
        self, request: pb.DeleteUdfRequest, context: Context
    ) -> pb.DeleteUdfResponse:
        caller = self._caller(context)
        count = await asyncio.to_thread(self._registry.delete, caller, request.name)
        return pb.DeleteUdfResponse(versions=count)


def to_message(
    version: UdfVersion, caller: Principal, *, include_pickle: bool = False
) -> pb.RegisteredUdf:
    """The RegisteredUdf message; shares only for those who may manage the UDF."""
    draft = version.draft
    definition = pb.UdfDefinition(
        source=draft.source,
        entry_point=draft.entry_point,
        description=draft.description,
        tags=draft.tags,
        parameters=[
            json_format.ParseDict(p, pb.Parameter()) for p in json.loads(draft.parameters_json)
        ],
    )
    if draft.pickle:
        definition.pickled.CopyFrom(
            udf_pb2.PickledValue(
                data=draft.pickle if include_pickle else b"", python_version=draft.python_version
            )
        )
    return pb.RegisteredUdf(
        name=f"{version.namespace}/{version.name}",
        namespace=version.namespace,
        version=version.version,
        latest_version=version.latest_version,
        created_at=timestamp_us(version.created_us),
        created_by=version.created_by,
        python_version=draft.python_version,
        definition=definition,
        shared_with=version.shared_with if caller.member_of(version.namespace) else (),
        digest=draft.digest,
    )
