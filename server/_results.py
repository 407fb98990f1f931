"""Stored results: Arrow IPC streams written as a result streams (to a ``ResultStorage``),
read back in pieces, counted against a quota."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

from ._result_storage import (
    Readable,
    ResultStorage,
    ResultTooLargeError,
    ResultWriter,
    result_key,
)
from ._status import R, ServiceError
from ._store import Store, TaskRecord

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
    """Writes one task's result as it streams; ``finish`` then ``commit`` make it the result."""

    def __init__(
        self, storage: ResultStorage, key: str, namespace: str, room: int, quota: int
    ) -> None:
        self._storage = storage
        #: Where the result is, once committed (relative to the storage).
        self.key = key
        self._writer: ResultWriter = storage.create(key)
        self._room = room
        self._quota = quota
        self._namespace = namespace
        self._finished = False
        self.bytes = 0
        #: Pieces up to this size are written on the loop (they only fill a file's buffer).
        self._inline = 0 if storage.remote else INLINE_WRITE_BYTES

    @classmethod
    async def open(
        cls, totals: StoredTotals, storage: ResultStorage, task: TaskRecord, quota: int
    ) -> ResultSink:
        """A sink with the room the namespace has left; RESOURCE_EXHAUSTED when it has none."""
        used = totals.fresh(task.namespace)
        if used is None:
            used = await asyncio.to_thread(totals.read, task.namespace)
        if used >= quota:
            raise quota_exceeded(task.namespace, quota)
        key, room = result_key(task), quota - used
        make = functools.partial(cls, storage, key, task.namespace, room, quota)
        return await asyncio.to_thread(make) if storage.remote else make()

    async def write(self, piece: bytes) -> None:
        self.bytes += len(piece)
        if self.bytes > self._room:
            raise quota_exceeded(self._namespace, self._quota)
        if len(piece) <= self._inline:
            self._writer.write(piece)  # into the file's buffer: cheaper than a thread hop
        else:
            await asyncio.to_thread(self._writer.write, piece)

    async def finish(self) -> None:
        """The whole result was written: make it visible (an object store's upload completes
        off the loop); INTERNAL if storage refuses."""
        try:
            if self._storage.remote:
                await asyncio.to_thread(self._writer.finish)
            else:
                self._writer.finish()
        except OSError as exc:  # e.g. the disk is full: the task fails, it never hangs
            raise ServiceError(
                R.ERROR_REASON_INTERNAL, f"the result could not be stored: {exc.strerror or exc}"
            ) from None
        self._finished = True

    def commit(self) -> str:
        """The task succeeded: its result's key (``finish`` was awaited)."""
        if not self._finished:
            raise RuntimeError("a result sink was committed before it was finished")
        return self.key

    def discard(self) -> None:
        """The task did not succeed: drop the result (an object store's in a thread: this
        runs on the loop, and nothing waits for it)."""
        if self._storage.remote:
            asyncio.get_running_loop().run_in_executor(None, self._writer.discard)
        else:
            self._writer.discard()


def quota_exceeded(namespace: str, quota: int) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_RESULT_QUOTA_EXCEEDED,
        f"namespace {namespace!r} keeps {quota} bytes of stored results at most; fetch or let "
        "older ones expire, or do not store this result",
        namespace=namespace,
        limit_bytes=str(quota),
    )


def open_stored(storage: ResultStorage, task: TaskRecord) -> Readable:
    """The task's stored result, open (blocking); NOT_FOUND if it has none (not yet, or no
    longer)."""
    try:
        return storage.open(_stored_key(task))
    except FileNotFoundError:
        raise _missing(task, "expired") from None


def is_stored(storage: ResultStorage, task: TaskRecord) -> bool:
    """Whether the task's result is still there (blocking)."""
    return bool(task.result_path) and storage.size(result_key(task)) is not None


async def read_pieces(reader: Readable, size: int) -> AsyncIterator[bytes]:
    """The result's bytes in pieces of ``size``, read off the event loop."""
    while piece := await asyncio.to_thread(reader.read, size):
        yield piece


def read_whole(storage: ResultStorage, task: TaskRecord, limit: int) -> bytes:
    """A stored result as one argument (blocking); RESOURCE_EXHAUSTED past ``limit`` bytes."""
    try:
        return storage.read_whole(_stored_key(task), limit)
    except FileNotFoundError:
        raise _missing(task, "expired") from None
    except ResultTooLargeError as exc:
        raise ServiceError(
            R.ERROR_REASON_ARRAY_READ_TOO_LARGE,
            f"the stored result of task {task.task_id} is {exc.size} bytes; one execution may "
            f"take at most {limit} bytes of server-side inputs",
            limit_bytes=str(limit),
        ) from None


def _stored_key(task: TaskRecord) -> str:
    """The key of the task's result; NOT_FOUND (while it runs, or if none was stored)."""
    if task.status in ("QUEUED", "RUNNING"):
        raise ServiceError(
            R.ERROR_REASON_RESULT_NOT_FOUND,
            f"task {task.task_id} has not finished; its result is not stored yet",
            task_id=task.task_id,
        )
    if not task.result_path:
        ends = task.result_expires_at
        expired = task.status == "SUCCEEDED" and ends is not None and ends <= time.time()
        raise _missing(task, "expired" if expired else "was not stored")
    return result_key(task)


def _missing(task: TaskRecord, why: str) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_RESULT_NOT_FOUND,
        f"the result of task {task.task_id} {why}",
        task_id=task.task_id,
    )
