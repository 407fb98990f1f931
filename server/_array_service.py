"""ArrayService: list readable arrays and describe their schemas."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tilefn.v1 import array_service_pb2 as pb
from tilefn.v1 import array_service_pb2_grpc

from ._arrays import ArrayCatalog, describe
from ._status import R, ServiceError, unary_status_mapped

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ArrayService(array_service_pb2_grpc.ArrayServiceServicer):
    """Serves tilefn.v1.ArrayService."""

    def __init__(self, catalog: ArrayCatalog) -> None:
        self._catalog = catalog

    @unary_status_mapped
    async def ListArrays(
        self, request: pb.ListArraysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListArraysResponse:
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID,
                f"page_size may be at most {MAX_PAGE}",
                option="page_size",
            )
        arrays = await asyncio.to_thread(self._catalog.list, request.namespace)
        after = [a for a in arrays if a.uri > request.page_token] if request.page_token else arrays
        page = after[:size]
        token = page[-1].uri if len(after) > size else ""
        return pb.ListArraysResponse(arrays=page, next_page_token=token)

    @unary_status_mapped
    async def GetArraySchema(
        self, request: pb.GetArraySchemaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetArraySchemaResponse:
        ref = self._catalog.resolve(request.uri)

        def load() -> pb.ArraySchema:
            with self._catalog.open(ref) as array:
                return describe(ref, array)

        return pb.GetArraySchemaResponse(schema=await asyncio.to_thread(load))
