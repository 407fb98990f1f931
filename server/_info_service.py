"""ServerInfoService: versions, sandbox layers and limits, for operators and clients."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import grpc

import tilefn
from tilefn.sandbox import WorkerPool
from tilefn.v1 import server_info_pb2 as pb
from tilefn.v1 import server_info_pb2_grpc

from ._admission import AdmissionLimits
from ._auth import Authenticator
from ._config import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, ServerConfig
from ._replicas import OWNER
from ._request import SERVER_PYTHON
from ._status import unary_status_mapped


class ServerInfoService(server_info_pb2_grpc.ServerInfoServiceServicer):
    """Serves tilefn.v1.ServerInfoService."""

    def __init__(self, config: ServerConfig, pool: WorkerPool, auth: Authenticator) -> None:
        self._config = config
        self._pool = pool
        self._auth = auth

    @unary_status_mapped
    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetServerInfoResponse:
        self._auth.principal(context)  # any valid token
        layers = self._pool.layers
        sandbox = pb.SandboxInfo(
            mode=self._config.pool.sandbox,
            active_layers=sorted(k for k, v in layers.items() if v),
            unavailable_layers=sorted(k for k, v in layers.items() if not v),
            max_tasks_per_worker=self._config.pool.max_tasks_per_worker,
        )
        return pb.GetServerInfoResponse(
            version=tilefn.__version__,
            python_version=SERVER_PYTHON,
            sandbox=sandbox,
            limits=self._limits(),
            replica=OWNER,
        )

    def _limits(self) -> pb.ServerLimits:
        config = self._config
        limits = pb.ServerLimits(
            max_request_bytes=config.max_request_bytes,
            max_result_bytes=config.max_result_bytes,
            min_chunk_bytes=MIN_CHUNK_BYTES,
            max_chunk_bytes=MAX_CHUNK_BYTES,
            array_memory_budget_bytes=config.array_memory_budget,
            worker_memory_bytes=config.pool.worker_memory_bytes,
            default_log_bytes=config.default_log_bytes,
            max_log_bytes=config.max_log_bytes,
            max_unary_result_bytes=config.max_unary_result_bytes,
            **dataclasses.asdict(AdmissionLimits.from_config(config)),
        )
        limits.default_timeout.FromTimedelta(timedelta(seconds=config.default_timeout))
        limits.max_timeout.FromTimedelta(timedelta(seconds=config.max_timeout))
        return limits
