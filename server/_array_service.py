"""ArrayService: list readable arrays, describe their schemas, share them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tilefn.v1 import array_service_pb2 as pb
from tilefn.v1 import array_service_pb2_grpc

from ._arrays import SCHEME, ArrayCatalog, describe
from ._auth import ArrayAccess
from ._identity import Identity
from ._registry import check_grantee
from ._request import page_size
from ._status import R, ServiceError, unary_status_mapped

Context = grpc.aio.ServicerContext[Any, Any]


class ArrayService(array_service_pb2_grpc.ArrayServiceServicer):
    """Serves tilefn.v1.ArrayService."""

    def __init__(self, catalog: ArrayCatalog, identity: Identity) -> None:
        self._catalog = catalog
        self._identity = identity

    def _access(self, context: Context) -> ArrayAccess:
        principal = self._identity.auth.principal(context)
        principal.require("read_arrays")
        return ArrayAccess(self._identity.store, principal)

    @unary_status_mapped
    async def ListArrays(
        self, request: pb.ListArraysRequest, context: Context
    ) -> pb.ListArraysResponse:
        access = self._access(context)
        size = page_size(request.page_size)
        arrays = await asyncio.to_thread(self._readable, access, request.namespace)
        after = [a for a in arrays if a.uri > request.page_token] if request.page_token else arrays
        page = after[:size]
        token = page[-1].uri if len(after) > size else ""
        return pb.ListArraysResponse(arrays=page, next_page_token=token)

    def _readable(self, access: ArrayAccess, namespace: str) -> list[pb.ArrayInfo]:
        """The arrays of the catalog the caller may read (others are not mentioned at all)."""
        arrays = self._catalog.list(namespace)
        if access.principal.admin:
            return arrays
        shared = access.shared()
        return [
            a
            for a in arrays
            if a.namespace in access.principal.namespaces
            or (a.namespace, a.uri.rsplit("/", 1)[-1]) in shared
        ]

    @unary_status_mapped
    async def GetArraySchema(
        self, request: pb.GetArraySchemaRequest, context: Context
    ) -> pb.GetArraySchemaResponse:
        access = self._access(context)
        ref = self._catalog.resolve(request.uri)

        def load() -> pb.ArraySchema:
            access.check(ref)
            with self._catalog.open(ref) as array:
                return describe(ref, array)

        return pb.GetArraySchemaResponse(schema=await asyncio.to_thread(load))

    @unary_status_mapped
    async def ShareArray(self, request: pb.ShareArrayRequest, context: Context) -> pb.ArraySharing:
        return await self._share(request, context, share=True)

    @unary_status_mapped
    async def UnshareArray(
        self, request: pb.ShareArrayRequest, context: Context
    ) -> pb.ArraySharing:
        return await self._share(request, context, share=False)

    async def _share(
        self, request: pb.ShareArrayRequest, context: Context, *, share: bool
    ) -> pb.ArraySharing:
        access = self._access(context)
        principal = access.principal
        principal.require("manage_arrays")
        ref = self._catalog.resolve(request.uri)
        if not ref.name.startswith(SCHEME):
            raise ServiceError(
                R.ERROR_REASON_ARRAY_NAME_INVALID,
                f"share arrays by name ({SCHEME}namespace/name), not by storage URI",
                array=ref.name[:200],
            )
        store = self._identity.store

        def change() -> tuple[str, ...]:
            access.check(ref)  # an invisible array is missing, as everywhere
            principal.require_member(ref.namespace, f"share {ref.name}")
            self._catalog.open(ref).close()  # NOT_FOUND for an array that does not exist
            check_grantee(store, request.grantee)
            store.share_array(ref.namespace, ref.array, request.grantee, share)
            return store.array_shares(ref.namespace, ref.array)

        shares = await asyncio.to_thread(change)
        return pb.ArraySharing(uri=ref.name, shared_with=shares)
