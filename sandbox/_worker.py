"""Parent side of one worker: send it a task, read its frames, kill it.

Nothing read from the worker is trusted: frame lengths are checked against limits before any
payload is read, control frames are bounded JSON, and DATA frames are passed through unparsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._errors import ProtocolViolationError, UdfFailedError, WorkerDiedError
from ._protocol import (
    HEADER,
    LOGS_HEADER,
    MAX_CONTROL_FRAME,
    WORKER_REASONS,
    FrameType,
    TaskSpec,
    encode_task,
)

#: Tasks up to this size go to the worker in one write, not a header and then the rest.
SMALL_TASK_BYTES = 256 * 1024
#: How long to wait for the template's exit report once a worker's channel hits EOF.
EXIT_REPORT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ArrayBatch:
    """One block of a batched array read, for a worker that asked for it."""

    #: The array descriptor (JSON) the worker decodes; fd numbers index ``fds``.
    descriptor: bytes
    #: The sealed memfds holding the block's columns.
    fds: tuple[int, ...]
    #: Called once the fds are sent (the worker holds its own copies then).
    release: Callable[[], None]


#: Produces the next block of batched stream i, or None when it is exhausted.
BatchProvider = Callable[[int], Awaitable[ArrayBatch | None]]


@dataclass(frozen=True)
class TaskSummary:
    """What a worker reported about a finished task."""

    rows: int
    batches: int
    ipc_bytes: int
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int
    #: How many items the result has (a list's, a dict's, an array's first axis), when it has
    #: them: a graph maps over them.
    items: int | None = None


def _frame_limit(task: TaskSpec) -> int:
    """The largest frame a worker may send during ``task``."""
    return max(task.max_chunk_bytes, MAX_CONTROL_FRAME, LOGS_HEADER.size + task.max_log_bytes)


@dataclass(frozen=True)
class TaskLogs:
    """What a task printed: the last bytes kept, decoded, and how many it printed in all."""

    text: str
    total_bytes: int
    truncated: bool

    @classmethod
    def decode(cls, payload: bytes, limit: int) -> TaskLogs:
        """Check and decode a LOGS frame's payload (untrusted: sizes are checked first)."""
        if len(payload) < LOGS_HEADER.size or len(payload) - LOGS_HEADER.size > limit:
            raise ProtocolViolationError("LOGS frame larger than the task's log limit")
        (total,) = LOGS_HEADER.unpack_from(payload)
        tail = payload[LOGS_HEADER.size :]
        if not len(tail) <= total <= MAX_COUNT:
            raise ProtocolViolationError("LOGS frame claims fewer bytes than it carries")
        return cls(tail.decode("utf-8", "replace"), total, total > len(tail))


@dataclass(frozen=True)
class LogPart:
    """Output a running task printed since its previous part: bytes ``total - len(data)`` to
    ``total`` of everything it printed (earlier unsent output beyond the log limit is lost)."""

    data: bytes
    total: int

    @classmethod
    def decode(cls, payload: bytes, limit: int) -> LogPart:
        """Check and decode a LOG_PART frame's payload (untrusted: sizes are checked first)."""
        if len(payload) < LOGS_HEADER.size or len(payload) - LOGS_HEADER.size > limit:
            raise ProtocolViolationError("LOG_PART frame larger than the task's log limit")
        (total,) = LOGS_HEADER.unpack_from(payload)
        data = bytes(payload[LOGS_HEADER.size :])
        if not len(data) <= total <= MAX_COUNT:
            raise ProtocolViolationError("LOG_PART frame claims fewer bytes than it carries")
        return cls(data, total)


class WorkerHandle:
    """A live worker process, seen from the parent."""

    def __init__(self, pid: int, channel: socket.socket, pidfd: int) -> None:
        self.pid = pid
        self.namespace: str | None = None
        self.tasks_run = 0
        self.layers: dict[str, bool] = {}
        self.layer_failures: dict[str, str] = {}
        #: The memory limit the template last set for this worker; None: the pool's default.
        self.memory_limit: int | None = None
        #: The kernel killed the worker for exceeding its cgroup memory limit.
        self.out_of_memory = False
        #: The worker said its last task left it unfit for reuse (threads, memory growth).
        self.retire_requested = False
        self._channel = channel
        self._retired = False
        self._reading = False  # a recv waits on the channel
        self._pidfd: int | None = pidfd
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        channel.setblocking(False)

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    async def wait_ready(self) -> None:
        """Wait for the worker's READY frame (it has applied its sandbox layers)."""
        kind, payload = await self._read_frame(MAX_CONTROL_FRAME)
        if kind != FrameType.READY:
            raise ProtocolViolationError(f"expected READY, got frame type {kind}")
        body = _json(payload)
        layers, failures = body.get("layers"), body.get("failures")
        if isinstance(layers, dict):
            self.layers = {str(k)[:32]: bool(v) for k, v in list(layers.items())[:32]}
        if isinstance(failures, dict):
            self.layer_failures = {
                str(k)[:32]: str(v)[:200] for k, v in list(failures.items())[:32]
            }

    async def run(
        self, task: TaskSpec, provide: BatchProvider | None = None
    ) -> AsyncIterator[bytes | LogPart | TaskLogs | TaskSummary]:
        """Run one task: yield the result's IPC bytes and output printed so far (LogPart) as
        they come, then all its logs, then its summary.

        ``provide`` serves the worker's requests for blocks of batched array reads.
        """
        self.tasks_run += 1
        loop = asyncio.get_running_loop()
        header, *rest = encode_task(task)
        if not task.fds and sum(map(len, rest)) <= SMALL_TASK_BYTES:
            await loop.sock_sendall(self._channel, b"".join([header, *rest]))  # one wakeup
        else:
            await self._send_with_fds(header, task.fds)
            for buffer in rest:
                await loop.sock_sendall(self._channel, buffer)
        while True:
            kind, payload = await self._read_frame(_frame_limit(task))
            if kind == FrameType.NEXT and provide is not None:
                await self._send_batch(provide, _json(payload).get("stream"))
                continue
            item = self._item(kind, payload, task)
            yield item
            if isinstance(item, TaskSummary):
                return

    def _item(
        self, kind: int, payload: bytes, task: TaskSpec
    ) -> bytes | LogPart | TaskLogs | TaskSummary:
        """What one frame of a running task means; raises for FAILED and unexpected frames."""
        if kind == FrameType.DATA:
            if len(payload) > task.max_chunk_bytes:
                raise ProtocolViolationError("DATA frame larger than the chunk limit")
            return payload
        if kind == FrameType.LOG_PART:
            return LogPart.decode(payload, task.max_log_bytes)
        if kind == FrameType.LOGS:
            return TaskLogs.decode(payload, task.max_log_bytes)
        if kind in (FrameType.DONE, FrameType.FAILED):
            body = _json(payload)
            self.retire_requested = body.get("retire") is True
            if kind == FrameType.FAILED:
                raise _failure(body)
            return _summary(body)
        raise ProtocolViolationError(f"unexpected frame type {kind} during a task")

    async def _send_batch(self, provide: BatchProvider, stream: object) -> None:
        if not isinstance(stream, int):
            raise ProtocolViolationError("NEXT frame without a stream number")
        batch = await provide(stream)
        if batch is None:
            await self._send_with_fds(HEADER.pack(FrameType.END, 0), ())
            return
        try:
            header = HEADER.pack(FrameType.BATCH, len(batch.descriptor))
            await self._send_with_fds(header, batch.fds)
            await asyncio.get_running_loop().sock_sendall(self._channel, batch.descriptor)
        finally:
            batch.release()

    async def _send_with_fds(self, header: bytes, fds: tuple[int, ...]) -> None:
        """Send the 5-byte frame header, with the task's memfds attached to it."""
        if not fds:
            await asyncio.get_running_loop().sock_sendall(self._channel, header)
            return
        while True:
            try:
                sent = socket.send_fds(self._channel, [header], list(fds))
            except BlockingIOError:
                await asyncio.sleep(0.001)  # an idle worker's buffer is empty; this is rare
                continue
            if sent != len(header):
                raise ProtocolViolationError("short write of a frame header")
            return

    def kill(self) -> None:
        """SIGKILL the worker (through its pidfd, so a recycled pid is never hit)."""
        if self._pidfd is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        self.retire()

    def retire(self) -> None:
        """Close the channel; an idle worker exits on EOF. Idempotent.

        A recv waiting on the channel is woken by a shutdown instead, and closes it: the event
        loop never reports a descriptor closed under it, so the call would hang.
        """
        self._retired = True
        if self._reading:
            with contextlib.suppress(OSError):
                self._channel.shutdown(socket.SHUT_RDWR)
        else:
            self._channel.close()

    def set_exited(self, returncode: int | None) -> None:
        """Record the template's report that the process has ended and been reaped."""
        self.retire()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if not self.exited.done():
            self.exited.set_result(returncode)

    async def _read_frame(self, limit: int) -> tuple[FrameType, bytes]:
        header = await self._read_exactly(HEADER.size)
        kind, length = HEADER.unpack(header)
        try:
            frame_type = FrameType(kind)
        except ValueError:
            raise ProtocolViolationError(f"unknown frame type {kind}") from None
        if length > limit:
            raise ProtocolViolationError(f"frame of {length} bytes exceeds the limit of {limit}")
        return frame_type, await self._read_exactly(length)

    async def _read_exactly(self, size: int) -> bytes:
        """Read exactly ``size`` bytes; usually one recv that the kernel copies straight into
        the returned object (the worker's frames are smaller than the socket buffer)."""
        loop = asyncio.get_running_loop()
        parts, have = [], 0
        while have < size:
            if self._retired:  # killed, or reported dead while we were not reading
                await self._died()
            self._reading = True
            try:
                piece = await loop.sock_recv(self._channel, size - have)
            finally:
                self._reading = False
                if self._retired:
                    self._channel.close()
            if not piece:
                await self._died()
            parts.append(piece)
            have += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _died(self) -> None:
        try:
            returncode = await asyncio.wait_for(asyncio.shield(self.exited), EXIT_REPORT_TIMEOUT)
        except TimeoutError:
            returncode = None
        raise WorkerDiedError(self.pid, returncode, out_of_memory=self.out_of_memory)


def _json(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise ProtocolViolationError(f"malformed control frame: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolViolationError("control frame is not a JSON object")
    return body


#: Counts a worker reports must fit a signed 64-bit integer (the store's, and protobuf's).
MAX_COUNT = (1 << 63) - 1


def _summary(body: dict[str, Any]) -> TaskSummary:
    """The DONE frame's figures, checked: a UDF can forge this frame, and the numbers are
    stored and shown, so each must be a finite count within a signed 64-bit integer."""
    try:
        summary = TaskSummary(
            rows=int(body["rows"]),
            batches=int(body["batches"]),
            ipc_bytes=int(body["ipc_bytes"]),
            wall_seconds=float(body["wall_seconds"]),
            cpu_seconds=float(body["cpu_seconds"]),
            peak_memory_bytes=int(body["peak_memory_bytes"]),
            items=None if body.get("items") is None else int(body["items"]),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ProtocolViolationError(f"malformed DONE frame: {exc!r}") from None
    for value in dataclasses.astuple(summary):
        if value is not None and not 0 <= value <= MAX_COUNT:  # also false for NaN
            raise ProtocolViolationError(f"DONE frame with an impossible figure: {value!r}")
    return summary


def _failure(body: dict[str, Any]) -> UdfFailedError:
    reason = body.get("reason")
    if reason not in WORKER_REASONS:
        raise ProtocolViolationError(f"worker reported an unknown reason {str(reason)[:64]!r}")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    return UdfFailedError(
        str(reason),
        str(body.get("message", "")),
        exception_type=str(body.get("exception_type", "")),
        traceback=str(body.get("traceback", "")),
        metadata={str(k)[:64]: str(v)[:1024] for k, v in list(metadata.items())[:16]},
    )
