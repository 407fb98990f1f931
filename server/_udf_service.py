"""UdfService: run a UDF in a leased worker and stream its Arrow result."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2

from tilefn.sandbox import TaskLogs, TaskSummary, WorkerPool
from tilefn.v1 import udf_service_pb2 as pb
from tilefn.v1 import udf_service_pb2_grpc

from ._arrays import ArrayCatalog
from ._config import ServerConfig
from ._request import Execution, plan_execution
from ._staging import StagedArrays
from ._status import TASK_ID_KEY, R, ServiceError, status_mapped

log = logging.getLogger(__name__)

#: The namespace every caller shares until authentication assigns real ones.
DEFAULT_NAMESPACE = "default"


class UdfService(udf_service_pb2_grpc.UdfServiceServicer):
    """Serves tilefn.v1.UdfService."""

    def __init__(self, config: ServerConfig, pool: WorkerPool, catalog: ArrayCatalog) -> None:
        self._config = config
        self._pool = pool
        self._catalog = catalog
        self.draining = False

    @status_mapped
    async def ExecuteUdf(
        self, request: pb.ExecuteUdfRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ExecuteUdfResponse]:
        task_id = uuid.uuid4().hex
        context.set_trailing_metadata(((TASK_ID_KEY, task_id),))
        if self.draining:
            raise ServiceError(R.ERROR_REASON_SHUTTING_DOWN, "the server is shutting down")
        execution = plan_execution(request, self._config)
        yield pb.ExecuteUdfResponse(task=pb.TaskInfo(task_id=task_id))
        log.info("task %s started", task_id)
        staged = StagedArrays(self._catalog, self._config)
        try:
            async for response in self._run(execution, request, staged, task_id):
                yield response
        except TimeoutError:
            raise ServiceError(
                R.ERROR_REASON_TIMEOUT,
                f"the UDF ran longer than its timeout of {execution.timeout:g} s and was stopped",
                timeout_seconds=f"{execution.timeout:g}",
            ) from None
        finally:
            staged.close()
            log.info("task %s ended", task_id)

    async def _run(
        self,
        execution: Execution,
        request: pb.ExecuteUdfRequest,
        staged: StagedArrays,
        task_id: str,
    ) -> AsyncIterator[pb.ExecuteUdfResponse]:
        """Read the arrays, lease a worker, relay its frames; TimeoutError past the deadline."""
        deadline = asyncio.get_running_loop().time() + execution.timeout
        async with asyncio.timeout_at(deadline):  # reading the arrays counts too
            task = await staged.stage(execution.task, request)
        sent = 0
        custom_memory = execution.memory_bytes != 0
        async with self._pool.lease(DEFAULT_NAMESPACE, fresh=custom_memory) as worker:
            await self._pool.limit(worker, execution.memory_bytes)
            frames = worker.run(task, staged.provide)
            # The deadline covers the worker, not time spent waiting on a slow reader.
            while (item := await _next_before(frames, deadline)) is not None:
                if isinstance(item, TaskSummary):
                    yield pb.ExecuteUdfResponse(summary=_summary(task_id, item))
                    continue
                if isinstance(item, TaskLogs):
                    yield pb.ExecuteUdfResponse(logs=_logs(item))
                    continue
                sent += len(item)
                if sent > execution.max_result_bytes:
                    raise _too_large(execution.max_result_bytes)
                yield pb.ExecuteUdfResponse(ipc=item)


async def _next_before(
    frames: AsyncIterator[bytes | TaskLogs | TaskSummary], deadline: float
) -> bytes | TaskLogs | TaskSummary | None:
    async with asyncio.timeout_at(deadline):
        return await anext(frames, None)


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_RESULT_TOO_LARGE,
        f"the result grew past {limit} bytes and the UDF was stopped; return less, or raise "
        "max_result_bytes",
        limit_bytes=str(limit),
    )


def _summary(task_id: str, item: TaskSummary) -> pb.ExecutionSummary:
    return pb.ExecutionSummary(
        task_id=task_id,
        rows=item.rows,
        batches=item.batches,
        ipc_bytes=item.ipc_bytes,
        wall_time=_duration(item.wall_seconds),
        cpu_time=_duration(item.cpu_seconds),
        peak_memory_bytes=item.peak_memory_bytes,
    )


def _logs(item: TaskLogs) -> pb.TaskLogs:
    return pb.TaskLogs(text=item.text, total_bytes=item.total_bytes, truncated=item.truncated)


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration
