"""Stored results: Arrow IPC stream files written as a result streams, read back in pieces."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from ._status import R, ServiceError
from ._store import Store, TaskRecord
from ._tasks import partial, result_path


class ResultSink:
    """Writes one task's result pieces to a partial file; ``commit`` makes it the result."""

    def __init__(self, results_dir: Path, task: TaskRecord, room: int, quota: int) -> None:
        self._path = partial(results_dir, task)
        self._final = result_path(results_dir, task)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = self._path.open("wb")
        self._room = room
        self._quota = quota
        self._namespace = task.namespace
        self.bytes = 0

    @classmethod
    async def open(
        cls, store: Store, results_dir: Path, task: TaskRecord, quota: int
    ) -> ResultSink:
        """A sink with the room the namespace has left; RESOURCE_EXHAUSTED when it has none."""
        used = await asyncio.to_thread(store.stored_bytes, task.namespace)
        if used >= quota:
            raise quota_exceeded(task.namespace, quota)
        return await asyncio.to_thread(cls, results_dir, task, quota - used, quota)

    async def write(self, piece: bytes) -> None:
        self.bytes += len(piece)
        if self.bytes > self._room:
            raise quota_exceeded(self._namespace, self._quota)
        await asyncio.to_thread(self._file.write, piece)

    def commit(self) -> str:
        """Close the file and give it its final name; returns the path (OSError if the disk
        refuses: the caller then discards)."""
        self._file.close()
        os.replace(self._path, self._final)
        return str(self._final)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._path.unlink(missing_ok=True)


def quota_exceeded(namespace: str, quota: int) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_RESULT_QUOTA_EXCEEDED,
        f"namespace {namespace!r} keeps {quota} bytes of stored results at most; fetch or let "
        "older ones expire, or do not store this result",
        namespace=namespace,
        limit_bytes=str(quota),
    )


def stored_file(task: TaskRecord) -> Path:
    """The task's stored result file; NOT_FOUND (FAILED_PRECONDITION while running) if none."""
    if task.status in ("QUEUED", "RUNNING"):
        raise ServiceError(
            R.ERROR_REASON_RESULT_NOT_FOUND,
            f"task {task.task_id} has not finished; its result is not stored yet",
            task_id=task.task_id,
        )
    if not task.result_path or not Path(task.result_path).exists():
        why = "expired" if task.result_path else "was not stored"
        raise ServiceError(
            R.ERROR_REASON_RESULT_NOT_FOUND,
            f"the result of task {task.task_id} {why}",
            task_id=task.task_id,
        )
    return Path(task.result_path)


async def read_pieces(path: Path, size: int) -> AsyncIterator[bytes]:
    """The file's bytes in pieces of ``size``, read off the event loop."""
    with path.open("rb") as file:
        while piece := await asyncio.to_thread(file.read, size):
            yield piece


def read_whole(task: TaskRecord, limit: int) -> bytes:
    """A stored result as one argument (blocking); RESOURCE_EXHAUSTED past ``limit`` bytes."""
    path = stored_file(task)
    size = path.stat().st_size
    if size > limit:
        raise ServiceError(
            R.ERROR_REASON_ARRAY_READ_TOO_LARGE,
            f"the stored result of task {task.task_id} is {size} bytes; one execution may "
            f"take at most {limit} bytes of server-side inputs",
            limit_bytes=str(limit),
        )
    return path.read_bytes()
