"""Stored results: Arrow IPC stream files written as a result streams, read back in pieces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from ._status import R, ServiceError
from ._store import Store, TaskRecord
from ._tasks import partial, result_path

#: Pieces up to this size are written on the loop (they only fill the file's buffer).
INLINE_WRITE_BYTES = 64 << 10


class StoredTotals:
    """Bytes of stored results per namespace, for the quota: read from the store at most every
    ``MAX_AGE`` seconds per namespace (so results stored by other server processes count from
    then on), plus what this process stored since."""

    MAX_AGE = 1.0

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, tuple[int, float]] = {}

    def fresh(self, namespace: str) -> int | None:
        """The total, if it was read recently; else None (call ``read``)."""
        known = self._known.get(namespace)
        if known is None or time.monotonic() - known[1] > self.MAX_AGE:
            return None
        return known[0]

    def read(self, namespace: str) -> int:
        """Read the total from the store (blocking)."""
        total = self._store.stored_bytes(namespace)
        self._known[namespace] = (total, time.monotonic())
        return total

    def add(self, namespace: str, nbytes: int) -> None:
        """This process stored ``nbytes`` more for ``namespace``."""
        if namespace in self._known:
            total, read_at = self._known[namespace]
            self._known[namespace] = (total + nbytes, read_at)


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
        cls, totals: StoredTotals, results_dir: Path, task: TaskRecord, quota: int
    ) -> ResultSink:
        """A sink with the room the namespace has left; RESOURCE_EXHAUSTED when it has none."""
        used = totals.fresh(task.namespace)
        if used is None:
            used = await asyncio.to_thread(totals.read, task.namespace)
        if used >= quota:
            raise quota_exceeded(task.namespace, quota)
        return cls(results_dir, task, quota - used, quota)

    async def write(self, piece: bytes) -> None:
        self.bytes += len(piece)
        if self.bytes > self._room:
            raise quota_exceeded(self._namespace, self._quota)
        if len(piece) <= INLINE_WRITE_BYTES:
            self._file.write(piece)  # into the file's buffer: cheaper than a thread hop
        else:
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
