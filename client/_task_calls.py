"""The task methods of the synchronous Client, as a mixin: submit, find, list, cancel, fetch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from tilefn.v1 import udf_service_pb2 as pb

from ._exceptions import from_rpc_error
from ._request import Udf
from ._result import AsyncResultStream, Logs, ResultStream
from ._tasks import STATUS_NAMES, AsyncTaskHandle, TaskHandle, TaskInfo

STATUS_VALUES = {name: value for value, name in STATUS_NAMES.items()}


def list_request(
    status: str | None, udf: str, since: datetime | None, namespace: str
) -> pb.ListTasksRequest:
    request = pb.ListTasksRequest(udf=udf, namespace=namespace)
    if status is not None:
        request.status = STATUS_VALUES[status.upper()]  # type: ignore[assignment]
    if since is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(since)
        request.created_after.CopyFrom(stamp)
    return request


def joined(messages: list[pb.TaskLogs]) -> Logs:
    """One Logs from a GetTaskLogs stream (the output in order, then its total)."""
    text = "".join(m.text for m in messages)
    total = messages[-1].total_bytes if messages else 0
    truncated = any(m.truncated for m in messages) or total > len(text.encode())
    return Logs(text, total, truncated)


class TaskCalls:
    """Asynchronous execution for Client: tasks that outlive the call that started them."""

    _udf: Any
    _metadata: tuple[tuple[str, str], ...]
    _unary: Callable[[Callable[..., Any], Any], Any]
    _request: Callable[..., pb.ExecuteUdfRequest]

    def submit(self, fn: Udf, /, *args: Any, **kwargs: Any) -> TaskHandle:
        """Queue ``fn(*args, **kwargs)`` and return at once with a handle; the result is stored
        on the server (``handle.result()`` fetches it; ``StoredResult(handle.task_id)`` passes
        it to another UDF without fetching it)."""
        request = self._request(fn, args, kwargs)
        return TaskHandle(self, TaskInfo.from_proto(self._unary(self._udf.SubmitUdf, request)))

    def task(self, task_id: str) -> TaskInfo:
        """One task of this caller's namespaces."""
        reply = self._unary(self._udf.GetTask, pb.GetTaskRequest(task_id=task_id))
        return TaskInfo.from_proto(reply)

    def tasks(
        self,
        *,
        status: str | None = None,
        udf: str = "",
        since: datetime | None = None,
        namespace: str = "",
        limit: int | None = None,
    ) -> list[TaskInfo]:
        """This caller's tasks, newest first: filter by status ("RUNNING"...), UDF ("ns/name"
        or "ns/name@N"), creation time and namespace; at most ``limit``."""
        request = list_request(status, udf, since, namespace)
        found: list[TaskInfo] = []
        while limit is None or len(found) < limit:
            page = self._unary(self._udf.ListTasks, request)
            found += [TaskInfo.from_proto(t) for t in page.tasks]
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found if limit is None else found[:limit]

    def cancel(self, task_id: str) -> TaskInfo:
        """Stop a queued or running task (its worker is killed); returns its record."""
        reply = self._unary(self._udf.CancelTask, pb.CancelTaskRequest(task_id=task_id))
        return TaskInfo.from_proto(reply)

    def fetch_stream(self, task_id: str) -> ResultStream:
        """A stored result's record batches, streamed as ExecuteUdf streams them."""
        call = self._udf.FetchResult(
            pb.FetchResultRequest(task_id=task_id), metadata=self._metadata
        )
        return ResultStream(call)

    def fetch(self, task_id: str) -> Any:
        """A stored result's Python value."""
        return self.fetch_stream(task_id).value()

    def task_logs(self, task_id: str, *, follow: bool = False) -> Logs:
        """What a task's UDF printed (so far); ``follow`` waits for a running task to end and
        returns its final logs."""
        if follow:
            for _ in self._log_messages(task_id, True):
                pass
        return joined(list(self._log_messages(task_id, False)))

    def follow_logs(self, task_id: str) -> Iterator[str]:
        """A running task's output as it is printed, until the task ends (then what is left)."""
        for message in self._log_messages(task_id, True):
            yield message.text

    def _log_messages(self, task_id: str, follow: bool) -> Iterator[pb.TaskLogs]:
        request = pb.GetTaskLogsRequest(task_id=task_id, follow=follow)
        try:  # no deadline: following lasts as long as the task
            yield from self._udf.GetTaskLogs(request, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None


class AsyncTaskCalls:
    """The same methods for AsyncClient, awaited (see ``TaskCalls`` for each)."""

    _udf: Any
    _metadata: tuple[tuple[str, str], ...]
    _unary: Callable[[Callable[..., Any], Any], Awaitable[Any]]
    _request: Callable[..., pb.ExecuteUdfRequest]

    async def submit(self, fn: Udf, /, *args: Any, **kwargs: Any) -> AsyncTaskHandle:
        request = self._request(fn, args, kwargs)
        reply = await self._unary(self._udf.SubmitUdf, request)
        return AsyncTaskHandle(self, TaskInfo.from_proto(reply))

    async def task(self, task_id: str) -> TaskInfo:
        reply = await self._unary(self._udf.GetTask, pb.GetTaskRequest(task_id=task_id))
        return TaskInfo.from_proto(reply)

    async def tasks(
        self,
        *,
        status: str | None = None,
        udf: str = "",
        since: datetime | None = None,
        namespace: str = "",
        limit: int | None = None,
    ) -> list[TaskInfo]:
        request = list_request(status, udf, since, namespace)
        found: list[TaskInfo] = []
        while limit is None or len(found) < limit:
            page = await self._unary(self._udf.ListTasks, request)
            found += [TaskInfo.from_proto(t) for t in page.tasks]
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found if limit is None else found[:limit]

    async def cancel(self, task_id: str) -> TaskInfo:
        reply = await self._unary(self._udf.CancelTask, pb.CancelTaskRequest(task_id=task_id))
        return TaskInfo.from_proto(reply)

    def fetch_stream(self, task_id: str) -> AsyncResultStream:
        call = self._udf.FetchResult(
            pb.FetchResultRequest(task_id=task_id), metadata=self._metadata
        )
        return AsyncResultStream(call)

    async def fetch(self, task_id: str) -> Any:
        return await self.fetch_stream(task_id).value()

    async def task_logs(self, task_id: str, *, follow: bool = False) -> Logs:
        if follow:
            async for _ in self._log_messages(task_id, True):
                pass
        return joined([m async for m in self._log_messages(task_id, False)])

    async def follow_logs(self, task_id: str) -> AsyncIterator[str]:
        async for message in self._log_messages(task_id, True):
            yield message.text

    async def _log_messages(self, task_id: str, follow: bool) -> AsyncIterator[pb.TaskLogs]:
        request = pb.GetTaskLogsRequest(task_id=task_id, follow=follow)
        try:
            async for message in self._udf.GetTaskLogs(request, metadata=self._metadata):
                yield message
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
