"""UdfService's task methods: GetTask, ListTasks, CancelTask, FetchResult, GetTaskLogs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tilefn.v1 import udf_service_pb2 as pb

from ._config import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES
from ._identity import Identity
from ._request import page_size
from ._results import open_stored, read_pieces
from ._status import R, ServiceError, status_mapped, unary_status_mapped
from ._store import TaskQuery, TaskRecord
from ._tasks import LiveTask
from ._times import duration, timestamp

Context = grpc.aio.ServicerContext[Any, Any]
#: How often a follower of another replica's task looks for its end, in seconds.
FOLLOW_POLL_SECONDS = 0.5
STATUSES = {
    pb.TASK_STATUS_QUEUED: "QUEUED",
    pb.TASK_STATUS_RUNNING: "RUNNING",
    pb.TASK_STATUS_SUCCEEDED: "SUCCEEDED",
    pb.TASK_STATUS_FAILED: "FAILED",
    pb.TASK_STATUS_CANCELLED: "CANCELLED",
}
STATUS_VALUES = {name: value for value, name in STATUSES.items()}


class TaskQueries:
    """Finds, lists, cancels tasks and serves their stored results and logs."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._tasks = identity.tasks

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        def unary(method: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                method,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )

        return {
            "GetTask": unary(self.GetTask, pb.GetTaskRequest, pb.Task),
            "ListTasks": unary(self.ListTasks, pb.ListTasksRequest, pb.ListTasksResponse),
            "CancelTask": unary(self.CancelTask, pb.CancelTaskRequest, pb.Task),
            "GetTaskLogs": grpc.unary_stream_rpc_method_handler(
                self.GetTaskLogs,
                request_deserializer=pb.GetTaskLogsRequest.FromString,
                response_serializer=pb.TaskLogs.SerializeToString,
            ),
            "FetchResult": grpc.unary_stream_rpc_method_handler(
                self.FetchResult,
                request_deserializer=pb.FetchResultRequest.FromString,
                response_serializer=pb.ExecuteUdfResponse.SerializeToString,
            ),
        }

    async def _find(self, task_id: str, context: Context, settled: bool = False) -> TaskRecord:
        principal = self._identity.auth.principal(context)  # on the loop: it may schedule work
        find = self._tasks.settled if settled else self._tasks.get
        return await asyncio.to_thread(find, principal, task_id)

    @unary_status_mapped
    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        return task_message(await self._find(request.task_id, context))

    @unary_status_mapped
    async def ListTasks(
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        principal = self._identity.auth.principal(context)
        size = page_size(request.page_size)
        if request.namespace:
            namespaces: frozenset[str] | None = frozenset({request.namespace})
        else:
            namespaces = None if principal.admin else principal.namespaces
        query = TaskQuery(
            namespaces=namespaces,
            status=STATUSES.get(request.status, ""),
            created_after=request.created_after.ToNanoseconds() / 1e9,
            udf=request.udf,
            before=parse_page_token(request.page_token),
            limit=size + 1,
        )
        found = await asyncio.to_thread(self._tasks.list, principal, query)
        page = found[:size]
        token = f"{page[-1].created_at!r}/{page[-1].task_id}" if len(found) > size else ""
        return pb.ListTasksResponse(tasks=[task_message(t) for t in page], next_page_token=token)

    @unary_status_mapped
    async def CancelTask(self, request: pb.CancelTaskRequest, context: Context) -> pb.Task:
        principal = self._identity.auth.principal(context)
        await self._tasks.cancel(principal, request.task_id)
        await self._tasks.wait(request.task_id)
        return task_message(self._tasks.get(principal, request.task_id))

    @status_mapped
    async def GetTaskLogs(
        self, request: pb.GetTaskLogsRequest, context: Context
    ) -> AsyncIterator[pb.TaskLogs]:
        """What the task printed; with ``follow``, output as it is printed until the end."""
        task = await self._find(request.task_id, context)
        live = self._tasks.live(request.task_id)
        if live is None and request.follow:
            task = await self._until_ended(task, context)
        if live is None or not request.follow:
            yield _snapshot(task, live)
            return
        sent = 0
        while (live := self._tasks.live(request.task_id)) is not None:
            changed = live.changed
            if live.log_total > sent:
                yield _since(bytes(live.log), live.log_total, sent)
                sent = live.log_total
            await changed.wait()
        final = await self._find(request.task_id, context)
        if final.logs_total > sent:
            yield _since(final.logs.encode(), final.logs_total, sent)

    async def _until_ended(self, task: TaskRecord, context: Context) -> TaskRecord:
        """A task another replica runs, once it has ended (its logs are stored then): what it
        prints reaches followers on that replica as it is printed, here only at the end."""
        while self._tasks.runs_elsewhere(task):
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            task = await self._find(task.task_id, context)
        return task

    @status_mapped
    async def FetchResult(
        self, request: pb.FetchResultRequest, context: Context
    ) -> AsyncIterator[pb.ExecuteUdfResponse]:
        task = await self._find(request.task_id, context, settled=True)
        size = request.max_chunk_bytes or DEFAULT_CHUNK_BYTES
        if not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID,
                f"max_chunk_bytes must be between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES}",
                option="max_chunk_bytes",
            )
        reader = await asyncio.to_thread(open_stored, self._tasks.settings.storage, task)
        with contextlib.closing(reader):
            yield pb.ExecuteUdfResponse(task=pb.TaskInfo(task_id=task.task_id))
            async for piece in read_pieces(reader, size):
                yield pb.ExecuteUdfResponse(ipc=piece)
        yield pb.ExecuteUdfResponse(
            summary=pb.ExecutionSummary(
                task_id=task.task_id,
                rows=task.rows,
                ipc_bytes=task.result_bytes,
                cpu_time=duration(task.cpu_seconds),
                peak_memory_bytes=task.peak_memory_bytes,
            )
        )


def _snapshot(task: TaskRecord, live: LiveTask | None) -> pb.TaskLogs:
    """The logs known now: the final ones, or a running task's output so far."""
    if live is None:
        return pb.TaskLogs(
            text=task.logs, total_bytes=task.logs_total, truncated=task.logs_truncated
        )
    return _since(bytes(live.log), live.log_total, 0)


def _since(tail: bytes, total: int, sent: int) -> pb.TaskLogs:
    """The output after byte ``sent`` of ``total``, from a tail of it; ``truncated`` when some
    of it is no longer held."""
    start = total - len(tail)
    begin = max(sent, start)
    text = tail[begin - start :].decode("utf-8", "replace")
    return pb.TaskLogs(text=text, total_bytes=total, truncated=begin > sent)


def parse_page_token(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    created, _, task_id = token.partition("/")
    try:
        return float(created), task_id
    except ValueError:
        raise ServiceError(
            R.ERROR_REASON_OPTION_INVALID,
            "page_token is not one this server gave",
            option="page_token",
        ) from None


def task_message(task: TaskRecord) -> pb.Task:
    """The Task message of a record."""
    return pb.Task(
        task_id=task.task_id,
        namespace=task.namespace,
        method=task.method,
        udf=task.udf,
        arrays=task.arrays,
        status=STATUS_VALUES[task.status],
        created_at=timestamp(task.created_at),
        started_at=timestamp(task.started_at),
        finished_at=timestamp(task.finished_at),
        cpu_time=duration(task.cpu_seconds),
        peak_memory_bytes=task.peak_memory_bytes,
        result_bytes=task.result_bytes,
        rows=task.rows,
        error_reason=task.error_reason,
        error_message=task.error_message,
        result_stored=bool(task.result_path),
        result_expires_at=timestamp(task.result_expires_at) if task.result_path else None,
        replica=task.owner,
    )
