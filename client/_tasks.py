"""Tasks on the client side: records as TaskInfo, submitted tasks as TaskHandle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from tilefn.v1 import udf_service_pb2 as pb

from ._exceptions import TilefnError
from ._result import Logs, ResultStream

STATUS_NAMES = {value: name.removeprefix("TASK_STATUS_") for name, value in pb.TaskStatus.items()}
FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class StoredResult:
    """An argument that is the stored result of an earlier task: the server passes it to the
    UDF as that task's UDF returned it, without sending it through the client."""

    task_id: str


@dataclass(frozen=True)
class TaskInfo:
    """A task's record, as the server keeps it."""

    task_id: str
    namespace: str
    method: str
    udf: str
    arrays: tuple[str, ...]
    #: QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED.
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cpu_seconds: float
    peak_memory_bytes: int
    result_bytes: int
    rows: int
    error_reason: str
    error_message: str
    result_stored: bool
    result_expires_at: datetime | None
    #: The server process (replica) that ran it, as its ``server_info()["replica"]`` says.
    replica: str = ""

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @classmethod
    def from_proto(cls, task: pb.Task) -> TaskInfo:
        return cls(
            task_id=task.task_id,
            namespace=task.namespace,
            method=task.method,
            udf=task.udf,
            arrays=tuple(task.arrays),
            status=STATUS_NAMES[task.status],
            created_at=task.created_at.ToDatetime(tzinfo=UTC),
            started_at=_when(task, "started_at"),
            finished_at=_when(task, "finished_at"),
            cpu_seconds=task.cpu_time.ToNanoseconds() / 1e9,
            peak_memory_bytes=task.peak_memory_bytes,
            result_bytes=task.result_bytes,
            rows=task.rows,
            error_reason=task.error_reason,
            error_message=task.error_message,
            result_stored=task.result_stored,
            result_expires_at=_when(task, "result_expires_at"),
            replica=task.replica,
        )


def _when(task: pb.Task, name: str) -> datetime | None:
    if not task.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(task, name)
    return stamp.ToDatetime(tzinfo=UTC)


class TaskFailedError(TilefnError):
    """A submitted task ended FAILED or CANCELLED; ``task`` says how (None for a graph node,
    whose ``NodeFailedError.node`` says how instead)."""

    task: TaskInfo | None

    def __init__(self, task: TaskInfo) -> None:
        super().__init__(
            f"task {task.task_id} {task.status}: {task.error_message or task.error_reason}",
            reason=task.error_reason,
            task_id=task.task_id,
        )
        self.task = task


class TaskHandle:
    """A submitted task: poll ``status``, wait with ``result()``, ``cancel()``, read ``logs()``."""

    def __init__(self, client: Any, task: TaskInfo) -> None:
        self._client = client
        self.task_id = task.task_id
        self.info = task

    @property
    def status(self) -> str:
        """The task's current status (asks the server)."""
        self.info = self._client.task(self.task_id)
        return self.info.status

    def wait(self, timeout: float | None = None) -> TaskInfo:
        """Wait until the task ends (polling, 20 ms growing to 1 s); TimeoutError past
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.02
        while self.status not in FINAL:
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"task {self.task_id} is still {self.info.status}")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)
        return self.info

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task and return its stored result's Python value; ``TaskFailedError``
        if it failed or was cancelled."""
        task = self.wait(timeout)
        if task.status != "SUCCEEDED":
            raise TaskFailedError(task)
        return self._client.fetch(self.task_id)

    def stream(self) -> ResultStream:
        """The stored result's record batches (the task must have succeeded)."""
        stream: ResultStream = self._client.fetch_stream(self.task_id)
        return stream

    def cancel(self) -> TaskInfo:
        """Stop the task if it is still queued or running; returns its record."""
        self.info = self._client.cancel(self.task_id)
        return self.info

    def logs(self, *, follow: bool = False) -> Logs:
        """What the UDF printed (so far); ``follow`` waits for the task to end first."""
        logs: Logs = self._client.task_logs(self.task_id, follow=follow)
        return logs

    def follow(self) -> Iterator[str]:
        """The UDF's output as it is printed, until the task ends."""
        chunks: Iterator[str] = self._client.follow_logs(self.task_id)
        return chunks

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r}, status={self.info.status!r})"


class AsyncTaskHandle:
    """The asyncio form of :class:`TaskHandle` (from ``AsyncClient.submit``); ``status()`` is
    a coroutine here, since it asks the server."""

    def __init__(self, client: Any, task: TaskInfo) -> None:
        self._client = client
        self.task_id = task.task_id
        self.info = task

    async def status(self) -> str:
        self.info = await self._client.task(self.task_id)
        return self.info.status

    async def wait(self, timeout: float | None = None) -> TaskInfo:
        """Wait until the task ends (polling, 20 ms growing to 1 s)."""
        async with asyncio.timeout(timeout):
            pause = 0.02
            while await self.status() not in FINAL:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 1.0)
        return self.info

    async def result(self, timeout: float | None = None) -> Any:
        task = await self.wait(timeout)
        if task.status != "SUCCEEDED":
            raise TaskFailedError(task)
        return await self._client.fetch(self.task_id)

    async def cancel(self) -> TaskInfo:
        self.info = await self._client.cancel(self.task_id)
        return self.info

    async def logs(self, *, follow: bool = False) -> Logs:
        logs: Logs = await self._client.task_logs(self.task_id, follow=follow)
        return logs

    def follow(self) -> AsyncIterator[str]:
        """The UDF's output as it is printed, until the task ends."""
        chunks: AsyncIterator[str] = self._client.follow_logs(self.task_id)
        return chunks

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.task_id!r}, status={self.info.status!r})"
