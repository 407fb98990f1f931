"""The parent <-> worker wire protocol, shared by both sides of the trust boundary.

Data flow (one worker, one task at a time)::

    parent (server)                                   worker (sandboxed, untrusted code)
      |  <-- READY  {pid, python}                         forked from the template, layers applied
      |  --> TASK   u32 header length | JSON header | blobs (UDF bytes, arguments)
      |  <-- DATA   raw Arrow IPC bytes (<= max_chunk_bytes each; concatenated = one IPC stream)
      |  <-- NEXT   {stream}  (a UDF iterating a batched array read asks for the next block)
      |  --> BATCH  array descriptor + memfds, or END when the stream is exhausted
      |  <-- LOG_PART u64 bytes printed so far | output new since the last part (while running:
      |             within 0.2 s of being printed, at most every 0.2 s, by a sender thread that
      |             shares a lock with the task thread's frames: printing never blocks)
      |  <-- LOGS   u64 bytes printed | the last bytes printed (only when the UDF printed)
      |  <-- DONE   {rows, batches, ipc_bytes, wall_seconds, cpu_seconds, peak_memory_bytes}
      |      or FAILED {reason, message, exception_type, traceback, metadata}
      |  --> TASK ... (the worker is reused only within one namespace) or close (the worker exits)

Every frame is a 5-byte header (type: u8, payload length: u32, network order) and the payload.
The parent never unpickles anything the worker sends: DATA is passed through as opaque bytes,
control frames are small JSON documents whose length is checked before anything is allocated.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

HEADER = struct.Struct("!BI")
TASK_HEADER = struct.Struct("!I")
LOGS_HEADER = struct.Struct("!Q")

#: The largest control frame (READY, DONE, FAILED) the parent accepts.
MAX_CONTROL_FRAME = 256 * 1024
#: The most memfds one task may carry (Linux allows 253 per message).
MAX_TASK_FDS = 250
#: Exception messages and tracebacks are cut to this many characters inside the worker.
MAX_ERROR_TEXT = 32 * 1024

ArgKind = Literal["json", "arrow", "pickled", "arrays", "list", "dict", "item"]
UdfKind = Literal["pickled", "source"]

#: Failure reasons a worker may report; anything else is a protocol violation.
WORKER_REASONS = frozenset(
    {
        "ERROR_REASON_UDF_RAISED",
        "ERROR_REASON_UDF_SOURCE_INVALID",
        "ERROR_REASON_UDF_ENTRY_POINT_MISSING",
        "ERROR_REASON_UDF_PICKLE_INVALID",
        "ERROR_REASON_ARGUMENT_INVALID",
        "ERROR_REASON_RESULT_TYPE_UNSUPPORTED",
    }
)


class FrameType(enum.IntEnum):
    """The kinds of frame on a worker channel."""

    READY = 1
    TASK = 2
    DATA = 3
    DONE = 4
    FAILED = 5
    NEXT = 6  # worker -> parent: {"stream": i}, the UDF wants the next batch of array stream i
    BATCH = 7  # parent -> worker: an array descriptor (JSON), its memfds attached
    END = 8  # parent -> worker: the stream has no more batches
    LOGS = 9  # worker -> parent: u64 bytes printed, then the last of them (before DONE/FAILED)
    LOG_PART = 10  # worker -> parent, while the UDF runs: u64 bytes printed so far, new bytes


@dataclass(frozen=True)
class ArgSpec:
    """One encoded argument, still untrusted bytes; decoded only inside the worker.

    Leaves ("json", "arrow", "pickled", "arrays") carry ``data``. A "list" holds ``items``; a
    "dict" holds ``items`` under ``keys``; an "item" is item ``index`` of the "arrow" value in
    ``data`` (a graph's dynamic fan-out: every instance gets the whole parent output and picks
    its own).
    """

    kind: ArgKind
    data: bytes = b""
    items: tuple[ArgSpec, ...] = ()
    keys: tuple[str, ...] = ()
    index: int = 0

    def shape(self) -> object:
        """This argument's description in the TASK header (its bytes travel as blobs)."""
        if self.kind == "list":
            return {"list": [item.shape() for item in self.items]}
        if self.kind == "dict":
            return {"dict": [[k, v.shape()] for k, v in zip(self.keys, self.items, strict=True)]}
        if self.kind == "item":
            return {"item": self.index}
        return self.kind

    def blobs(self) -> list[bytes]:
        """The bytes of this argument's leaves, depth first."""
        if self.kind in ("list", "dict"):
            return [blob for item in self.items for blob in item.blobs()]
        return [self.data]

    @classmethod
    def from_shape(cls, shape: Any, blobs: Iterator[bytes]) -> ArgSpec:
        """Inverse of :meth:`shape` and :meth:`blobs`."""
        if isinstance(shape, str):
            return cls(shape, next(blobs))  # type: ignore[arg-type]
        if "list" in shape:
            return cls("list", items=tuple(cls.from_shape(s, blobs) for s in shape["list"]))
        if "dict" in shape:
            pairs = shape["dict"]
            items = tuple(cls.from_shape(s, blobs) for _, s in pairs)
            return cls("dict", items=items, keys=tuple(k for k, _ in pairs))
        return cls("item", next(blobs), index=int(shape["item"]))

    def walk(self) -> Iterator[ArgSpec]:
        """This argument and every argument nested in it."""
        yield self
        for item in self.items:
            yield from item.walk()


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs to run one UDF call."""

    udf_kind: UdfKind
    udf: bytes
    entry_point: str = ""
    args: tuple[ArgSpec, ...] = ()
    kwargs: tuple[tuple[str, ArgSpec], ...] = ()
    max_chunk_bytes: int = 1 << 20
    compression: str | None = None
    #: CPU seconds the task may use (0: no limit); a limited worker is retired afterwards.
    cpu_seconds: float = 0.0
    #: Bytes of printed output to keep (the last ones); the worker drops the rest.
    max_log_bytes: int = 64 * 1024
    #: Sealed memfds holding array data ("arrays" arguments refer to them by index); they travel
    #: with the TASK frame's header as SCM_RIGHTS.
    fds: tuple[int, ...] = ()


def encode_task(task: TaskSpec) -> list[bytes]:
    """Return the TASK frame as buffers for ``sendmsg`` (blobs are not copied into one)."""
    blobs = [task.udf]
    for arg in (*task.args, *(a for _, a in task.kwargs)):
        blobs += arg.blobs()
    header = json.dumps(
        {
            "udf_kind": task.udf_kind,
            "entry_point": task.entry_point,
            "args": [a.shape() for a in task.args],
            "kwargs": [[name, a.shape()] for name, a in task.kwargs],
            "lengths": [len(b) for b in blobs],
            "max_chunk_bytes": task.max_chunk_bytes,
            "compression": task.compression,
            "cpu_seconds": task.cpu_seconds,
            "max_log_bytes": task.max_log_bytes,
        }
    ).encode()
    size = TASK_HEADER.size + len(header) + sum(len(b) for b in blobs)
    return [HEADER.pack(FrameType.TASK, size), TASK_HEADER.pack(len(header)), header, *blobs]


def decode_task(payload: memoryview, fds: tuple[int, ...] = ()) -> TaskSpec:
    """Inverse of :func:`encode_task`, given a TASK frame's payload."""
    (header_len,) = TASK_HEADER.unpack_from(payload)
    start = TASK_HEADER.size
    header = json.loads(bytes(payload[start : start + header_len]))
    offset = start + header_len
    blobs = []
    for length in header["lengths"]:
        blobs.append(bytes(payload[offset : offset + length]))
        offset += length
    udf, rest = blobs[0], iter(blobs[1:])
    args = tuple(ArgSpec.from_shape(shape, rest) for shape in header["args"])
    kwargs = tuple((name, ArgSpec.from_shape(shape, rest)) for name, shape in header["kwargs"])
    return TaskSpec(
        udf_kind=header["udf_kind"],
        udf=udf,
        entry_point=header["entry_point"],
        args=args,
        kwargs=kwargs,
        max_chunk_bytes=header["max_chunk_bytes"],
        compression=header["compression"],
        cpu_seconds=header["cpu_seconds"],
        max_log_bytes=header["max_log_bytes"],
        fds=fds,
    )


def logs_frame(total: int, tail: bytes, kind: FrameType = FrameType.LOGS) -> bytes:
    """Encode a LOGS frame (how many bytes the UDF printed and the last of them) or a LOG_PART
    frame (how many so far and the ones new since the previous part)."""
    return HEADER.pack(kind, LOGS_HEADER.size + len(tail)) + LOGS_HEADER.pack(total) + tail


def control_frame(kind: FrameType, body: dict[str, object]) -> bytes:
    """Encode a small JSON control frame (READY, DONE, FAILED)."""
    payload = json.dumps(body).encode()
    return HEADER.pack(kind, len(payload)) + payload
