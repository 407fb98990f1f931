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
    """Stands in for sys.stdout/sys.stderr while a task runs: keeps the last ``limit`` bytes
    printed (for the LOGS frame), counts all, and streams new output as LOG_PART frames.

    A sender thread of the stream's own, started by the first output, passes what was printed
    to ``send_part``: at once after a quiet spell, then at most every ``PART_SECONDS``. So what
    any thread of the UDF prints reaches followers within ``PART_SECONDS`` (plus the time the
    parent takes to read the channel), even if the UDF then stays silent for an hour.
    (Sending only from the printing call, when the channel had room, held output back until
    the next print: for ever if the UDF then slept, and always for its other threads.)

    Printing never blocks or fails: it appends to a buffer under a short lock; ``send_part``
    may block while the channel is full, but only the sender thread waits then. Output printed
    meanwhile goes with the next part, of at most ``limit`` bytes (older unsent output is left
    to the final logs): the kept tail, the unsent output and a part being sent stay below five
    times the limit. If the thread cannot start (the UDF used up the worker's thread limit),
    there are just no parts.

    ``send_part`` must send a frame whole with respect to the task's other frames (the caller
    holds a lock shared with them). ``close`` stops and joins the sender, so no part ever
    follows the task's last frame.
    """

    def __init__(self, limit: int, send_part: Callable[[bytes], None] | None = None) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0
        self._send_part = send_part if limit else None
        self._unsent = bytearray()
        #: When the next part may go (monotonic): parts are at least PART_SECONDS apart.
        self._due = 0.0
        self._closing = False
        self._sender: threading.Thread | None = None
        # Reentrant: a signal handler that prints runs in the main thread, maybe inside write.
        self._changed = threading.Condition(threading.RLock())

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        with self._changed:
            self.total += len(data)
            if not self.limit:
                return len(text)
            self.kept += data[-self.limit :]
            if len(self.kept) > 2 * self.limit:
                del self.kept[: len(self.kept) - self.limit]
            if self._send_part is not None and not self._closing:
                self._queue(data, self._send_part)
        return len(text)

    def _queue(self, data: bytes, send_part: Callable[[bytes], None]) -> None:
        """Add output for the sender (called holding the lock); wake it if it was idle."""
        idle = not self._unsent
        self._unsent += data[-self.limit :]
        if len(self._unsent) > 2 * self.limit:
            del self._unsent[: len(self._unsent) - self.limit]
        if self._sender is None:
            self._start_sender(send_part)
        elif idle:
            self._changed.notify()  # a sender with output pending already waits with a timeout

    def _start_sender(self, send_part: Callable[[bytes], None]) -> None:
        sender = threading.Thread(
            target=self._send_parts, args=(send_part,), name="tilefn-log-parts", daemon=True
        )
        self._sender = sender  # before start: a print from a signal handler must not start two
        try:
            sender.start()
        except RuntimeError:  # no thread to be had: output still goes with the final logs
            self._sender = self._send_part = None

    def _send_parts(self, send_part: Callable[[bytes], None]) -> None:
        """The sender thread: one part whenever one is due, until the stream is closed."""
        while (frame := self._next_part()) is not None:
            try:
                send_part(frame)
            except OSError:  # the parent is gone; the task thread finds out on its own
                return

    def _next_part(self) -> bytes | None:
        """Wait until output is pending and a part is due; None once the stream is closing."""
        with self._changed:
            while not self._closing:
                if not self._unsent:
                    self._changed.wait()
                elif (wait := self._due - time.monotonic()) > 0:
                    self._changed.wait(wait)
                else:
                    frame = logs_frame(self.total, bytes(self._unsent[-self.limit :]), LOG_PART)
                    self._unsent.clear()
                    self._due = time.monotonic() + PART_SECONDS
                    return frame
            return None

    def flush(self) -> None:
        """Nothing to do: what was printed leaves within ``PART_SECONDS`` anyway. (Sending at
        every ``print(..., flush=True)`` would let a loop of them flood the server.)"""

    def close(self) -> None:
        """Stop sending parts: output not sent yet goes with the final logs. Returns once the
        sender thread has ended, so that no part follows the task's last frame. (A stream is
        closed at the latest when it is collected: IOBase closes it then.)"""
        with self._changed:
            self._closing = True
            self._changed.notify()
            sender = self._sender
        if sender is not None and sender is not threading.current_thread():
            sender.join()
        super().close()

    def writable(self) -> bool:
        return True

    def frame(self) -> bytes:
        """The LOGS frame for what was printed; empty when nothing was."""
        with self._changed:
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


def _fetch_batch(
    channel: socket.socket, sending: threading.Lock, stream: int
) -> tuple[bytes, tuple[int, ...]] | None:
    """Ask the parent for the next block of a batched array read; None when there is no more."""
    with sending:  # the reply is read without the lock: the log sender may send meanwhile
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
    # One frame at a time: the task's thread (DATA, NEXT) and the log sender share the channel.
    sending = threading.Lock()
    captured = LogTail(task.max_log_bytes, functools.partial(_send_whole, channel, sending))
    sys.stdout = sys.stderr = captured
    tail = b""
    try:
        kind, body, tail = FrameType.DONE, *_run(channel, sending, task)
        body["wall_seconds"] = time.perf_counter() - started
        body["cpu_seconds"] = time.process_time() - cpu_started
    except execute.TaskFailure as failure:
        kind, body = FrameType.FAILED, _failure_body(failure)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        captured.close()  # joins the log sender: no part may follow the task's last frame
        for fd in task.fds:
            with contextlib.suppress(OSError):  # the UDF may have closed it itself
                os.close(fd)
    body["peak_memory_bytes"] = _peak_memory()
    body["retire"] = tidy() or task.cpu_seconds > 0
    channel.sendall(tail + captured.frame() + control_frame(kind, body))


def _send_whole(channel: socket.socket, sending: threading.Lock, frame: bytes) -> None:
    """Send a frame (a LOG_PART, from the log sender) between the task thread's frames; blocks
    while the channel is full, which only the log sender thread waits for."""
    with sending:
        channel.sendall(frame)


def _run(
    channel: socket.socket, sending: threading.Lock, task: TaskSpec
) -> tuple[dict[str, object], bytes]:
    """Load, call, encode and stream the result, but for its last DATA frame (returned).

    Every frame is sent holding ``sending``. Raises TaskFailure on any failure.
    """
    fn = execute.load_udf(task)
    fetch = functools.partial(_fetch_batch, channel, sending)
    args, kwargs = execute.decode_arguments(task, fetch)
    result = execute.call(fn, args, kwargs)
    schema, batches = execute.encode_result(result, task.max_chunk_bytes)
    items = execute.item_count(result)
    ipc_bytes, tail = execute.write_stream(channel, schema, batches, task, sending)
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
