"""Runs inside the worker: the life of one worker process after the template forks it.

The worker confines itself (``_in_layers``), reports READY, then serves TASK frames one at a
time until the parent closes the channel. It never returns: it leaves through ``os._exit``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from . import _in_execute as execute
from ._in_filesystem import wipe_scratch
from ._in_layers import FAILURES, SandboxSetup, apply_layers
from ._protocol import (
    HEADER,
    MAX_TASK_FDS,
    FrameType,
    TaskSpec,
    control_frame,
    decode_task,
    logs_frame,
)

#: A worker whose peak memory passed this is retired after its task rather than reused.
RETIRE_RSS_BYTES = 1 << 30
#: Output printed while a UDF runs reaches the server at most this often (LOG_PART frames).
PART_SECONDS = 0.2
LOG_PART = FrameType.LOG_PART


class LogTail(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: keeps the last ``limit`` bytes printed, counts all,
    and passes new output to ``send_part`` (a LOG_PART frame) at most every ``PART_SECONDS``.

    Printing never blocks or fails, however much a UDF prints: a part is only sent when the
    channel has room (``send_part`` returns False otherwise and the output waits for the next
    one); the memory held stays below four times the limit.
    """

    def __init__(self, limit: int, send_part: Callable[[bytes], bool] | None = None) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0
        self._send_part = send_part
        self._unsent = bytearray()
        self._next_part = 0.0
        #: Parts go out from the task's own thread only, between its DATA frames: a UDF's
        #: other threads must never interleave bytes with a frame being sent.
        self._sender = threading.get_ident()

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        self.total += len(data)
        self.kept += data[-self.limit :] if self.limit else b""
        if len(self.kept) > 2 * self.limit:
            del self.kept[: len(self.kept) - self.limit]
        if self._send_part is not None and self.limit:
            self._part(data)
        return len(text)

    def _part(self, data: bytes) -> None:
        self._unsent += data[-self.limit :]
        if len(self._unsent) > 2 * self.limit:
            del self._unsent[: len(self._unsent) - self.limit]
        if time.monotonic() >= self._next_part:
            self.flush()

    def close(self) -> None:
        """Stop sending parts. (IOBase closes, and so flushes, a stream when it is collected:
        after the task's DONE frame, a part would reach the parent during the next task.)"""
        self._send_part = None
        super().close()

    def flush(self) -> None:
        """Send what was printed since the last part now (``print(..., flush=True)``), if the
        channel has room; otherwise it goes with the next part or the final logs."""
        if self._send_part is None or not self._unsent or threading.get_ident() != self._sender:
            return
        self._next_part = time.monotonic() + PART_SECONDS
        frame = logs_frame(self.total, bytes(self._unsent[-self.limit :]), LOG_PART)
        if self._send_part(frame):
            self._unsent.clear()

    def writable(self) -> bool:
        return True

    def frame(self) -> bytes:
        """The LOGS frame for what was printed; empty when nothing was."""
        if not self.total:
            return b""
        return logs_frame(self.total, bytes(self.kept[-self.limit :] if self.limit else b""))


def worker_main(channel: socket.socket, setup: SandboxSetup, slot: int) -> NoReturn:
    """Entry point in the freshly forked child; ``channel`` is its end of the socketpair."""
    code = 0
    try:
        _detach_from_template()
        sys.dont_write_bytecode = True  # the filesystem is read-only; don't even try
        layers = apply_layers(setup, slot)
        execute.warm_up()
        tidy = Tidy(setup.paths if layers["filesystem"] else None, _open_fds())
        ready = {"pid": os.getpid(), "python": _python(), "layers": layers, "failures": FAILURES}
        channel.sendall(control_frame(FrameType.READY, ready))
        while (frame := _recv_frame(channel, FrameType.TASK)) is not None:
            _serve(channel, decode_task(*frame), tidy)
    except BaseException:  # the parent sees the exit code; nothing may escape the fork
        code = 70
    finally:
        os._exit(code)


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _detach_from_template() -> None:
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _recv_frame(
    channel: socket.socket, *expected: FrameType
) -> tuple[memoryview, tuple[int, ...]] | None:
    """Read one frame of an expected type with its fds; None when the parent closed the channel."""
    start, fds, _, _ = socket.recv_fds(channel, HEADER.size, MAX_TASK_FDS)
    if not start:
        return None
    rest = _recv_exactly(channel, HEADER.size - len(start))
    if rest is None:
        return None
    kind, length = HEADER.unpack(start + rest)
    if kind not in expected:
        raise RuntimeError(f"unexpected frame type {kind}")
    payload = _recv_exactly(channel, length)
    if payload is None:
        return None
    if kind == FrameType.END:
        return memoryview(b""), ()
    return memoryview(payload), tuple(fds)


def _recv_exactly(channel: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        got = channel.recv_into(view)
        if got == 0:
            return None
        view = view[got:]
    return buffer


def _fetch_batch(channel: socket.socket, stream: int) -> tuple[bytes, tuple[int, ...]] | None:
    """Ask the parent for the next block of a batched array read; None when there is no more."""
    channel.sendall(control_frame(FrameType.NEXT, {"stream": stream}))
    frame = _recv_frame(channel, FrameType.BATCH, FrameType.END)
    if frame is None:
        raise EOFError("the parent closed the channel")
    payload, fds = frame
    return (bytes(payload), fds) if payload else None


def _serve(channel: socket.socket, task: TaskSpec, tidy: Tidy) -> None:
    """Run one task and report how it ended (with what it printed)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    _limit_cpu(task.cpu_seconds)
    captured = LogTail(task.max_log_bytes, functools.partial(_send_if_room, channel))
    sys.stdout = sys.stderr = captured
    tail = b""
    try:
        kind, body, tail = FrameType.DONE, *_run(channel, task)
        body["wall_seconds"] = time.perf_counter() - started
        body["cpu_seconds"] = time.process_time() - cpu_started
    except execute.TaskFailure as failure:
        kind, body = FrameType.FAILED, _failure_body(failure)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        captured.close()  # no part may follow the task's last frame
        for fd in task.fds:
            with contextlib.suppress(OSError):  # the UDF may have closed it itself
                os.close(fd)
    body["peak_memory_bytes"] = _peak_memory()
    body["retire"] = tidy() or task.cpu_seconds > 0
    channel.sendall(tail + captured.frame() + control_frame(kind, body))


def _send_if_room(channel: socket.socket, frame: bytes) -> bool:
    """Send a small frame only if the channel has room now (a Unix socket reports writable
    while under a quarter of its buffer is used), so that printing never waits."""
    if not select.select([], [channel], [], 0)[1]:
        return False
    channel.sendall(frame)
    return True


def _run(channel: socket.socket, task: TaskSpec) -> tuple[dict[str, object], bytes]:
    """Load, call, encode and stream the result, but for its last DATA frame (returned).

    Raises TaskFailure on any failure.
    """
    fn = execute.load_udf(task)
    args, kwargs = execute.decode_arguments(task, functools.partial(_fetch_batch, channel))
    result = execute.call(fn, args, kwargs)
    schema, batches = execute.encode_result(result, task.max_chunk_bytes)
    items = execute.item_count(result)
    ipc_bytes, tail = execute.write_stream(channel, schema, batches, task)
    figures: dict[str, object] = {
        "rows": batches.rows,
        "batches": batches.batches,
        "ipc_bytes": ipc_bytes,
    }
    return figures | ({} if items is None else {"items": items}), tail


def _limit_cpu(seconds: float) -> None:
    """SIGXCPU once the task has used ``seconds`` of CPU, SIGKILL a second later.

    The hard limit can only go down, so a CPU-limited worker is retired after its task.
    """
    if seconds > 0:
        soft = math.ceil(time.process_time() + seconds)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))


@dataclass(frozen=True)
class Tidy:
    """Readies a worker for the next task of its namespace, or says it is too tainted to.

    A task that left threads running, descriptors open (a memfd still charged to the worker's
    cgroup, a file the next task could read) or grew the worker past RETIRE_RSS_BYTES could
    affect the next task, so such a worker is retired instead of reused.
    """

    #: The read-only binds under /tmp when the scratch is private (then it is wiped); else None.
    scratch: tuple[str, ...] | None
    #: How many descriptors the worker had open before its first task; None without /proc.
    fds: int | None

    def __call__(self) -> bool:
        """Wipe the scratch; True when the worker must be retired."""
        if self.scratch is not None:
            wipe_scratch(self.scratch)
        leaked_fds = self.fds is not None and (_open_fds() or 0) > self.fds
        return threading.active_count() > 1 or _peak_memory() > RETIRE_RSS_BYTES or leaked_fds


def _open_fds() -> int | None:
    """How many descriptors this process has open; None where /proc is not mounted."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _peak_memory() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _failure_body(failure: execute.TaskFailure) -> dict[str, object]:
    return {
        "reason": failure.reason,
        "message": failure.message,
        "exception_type": failure.exception_type,
        "traceback": failure.traceback,
        "metadata": failure.metadata,
    }
