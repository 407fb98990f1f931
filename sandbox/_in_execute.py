"""Runs inside the worker: load a UDF, decode its arguments, call it, encode the result as Arrow.

Everything here handles untrusted bytes and runs untrusted code, so it only ever runs in a
sandboxed worker process. Failures become :class:`TaskFailure` with an ``ErrorReason`` name; the
parent turns them into gRPC statuses.
"""

from __future__ import annotations

import ast
import contextlib
import json
import linecache
import socket
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa

from tilefn import codec

from ._in_arrays import FetchBatch, decode_arrays
from ._protocol import HEADER, MAX_ERROR_TEXT, ArgSpec, FrameType, TaskSpec

UDF_FILENAME = "<udf>"
#: Sources whose code a worker keeps compiled, and the longest source kept (characters).
COMPILED_SOURCES = 8
COMPILED_SOURCE_CHARS = 64 << 10
_COMPILED: dict[tuple[str, str], tuple[types.CodeType, str]] = {}


class TaskFailure(Exception):
    """A task failed for a reason the client should hear about."""

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata
        self.exception_type = ""
        self.traceback = ""


def udf_raised(exc: BaseException) -> TaskFailure:
    """Describe an exception raised by user code, with its traceback as bounded text."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    failure = TaskFailure("ERROR_REASON_UDF_RAISED", _cut(f"{name}: {exc}"), exception_type=name)
    failure.exception_type = name
    failure.traceback = _cut("".join(traceback.format_exception(_without_own_frames(exc))))
    return failure


def _without_own_frames(exc: BaseException) -> BaseException:
    """Drop the worker's own frames from the front of a traceback, keeping the UDF's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return text[: MAX_ERROR_TEXT - 40] + f"\n... [{len(text) - MAX_ERROR_TEXT + 40} chars cut]"


def load_udf(task: TaskSpec) -> Callable[..., Any]:
    """Turn the task's UDF bytes into a callable (unpickle or compile + execute the source)."""
    if task.udf_kind == "pickled":
        try:
            fn = cloudpickle.loads(task.udf)
        except Exception as exc:
            raise TaskFailure(
                "ERROR_REASON_UDF_PICKLE_INVALID",
                _cut(f"the pickled UDF could not be loaded: {type(exc).__name__}: {exc}"),
            ) from None
        if not callable(fn):
            raise TaskFailure(
                "ERROR_REASON_UDF_PICKLE_INVALID",
                f"the pickled UDF is a {type(fn).__name__!r}, not a callable",
            )
        return fn  # type: ignore[no-any-return]
    return _load_source(task.udf.decode("utf-8", errors="replace"), task.entry_point)


def _load_source(text: str, entry_point: str) -> Callable[..., Any]:
    code, name = _compiled(text, entry_point)
    # Lets tracebacks quote the UDF's own lines, as they would for a file.
    linecache.cache[UDF_FILENAME] = (len(text), None, text.splitlines(True), UDF_FILENAME)
    module = types.ModuleType("__udf__")
    try:
        exec(code, module.__dict__)
    except BaseException as exc:
        raise udf_raised(exc) from None
    fn = module.__dict__.get(name)
    if not callable(fn):
        raise TaskFailure(
            "ERROR_REASON_UDF_ENTRY_POINT_MISSING",
            f"the UDF source defines no callable named {name!r}",
            entry_point=name,
        )
    return fn  # type: ignore[no-any-return]


def _compiled(text: str, entry_point: str) -> tuple[types.CodeType, str]:
    """The source's code object and the name to call, from this worker's cache when one of
    its earlier tasks sent the same source (a graph's nodes do: parsing and compiling cost more
    than running a small UDF). Code objects are immutable; each task still runs the code in a
    fresh module. (A worker only ever serves one namespace, so what one task could do to this
    cache it could do to the rest of the process already.)"""
    key = (text, entry_point)
    if (found := _COMPILED.get(key)) is not None:
        return found
    try:
        tree = ast.parse(text, UDF_FILENAME)
        code = compile(tree, UDF_FILENAME, "exec")
    except SyntaxError as exc:
        raise TaskFailure(
            "ERROR_REASON_UDF_SOURCE_INVALID",
            f"the UDF source does not compile: {exc.msg} (line {exc.lineno})",
            line=str(exc.lineno or 0),
        ) from None
    found = code, entry_point or _single_function(tree)
    if len(text) <= COMPILED_SOURCE_CHARS:
        if len(_COMPILED) >= COMPILED_SOURCES:
            _COMPILED.clear()  # a worker's tasks rarely alternate between many sources
        _COMPILED[key] = found
    return found


def _single_function(tree: ast.Module) -> str:
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise TaskFailure(
            "ERROR_REASON_UDF_ENTRY_POINT_MISSING",
            "no entry point given and the source does not define exactly one top-level function "
            f"(found: {found}); name the function to call",
            entry_point="",
        )
    return names[0]


def decode_arguments(task: TaskSpec, fetch: FetchBatch) -> tuple[list[Any], dict[str, Any]]:
    """Decode every argument; a malformed one fails the task with ARGUMENT_INVALID naming it."""
    args = [_decode_argument(f"args[{i}]", a, task, fetch) for i, a in enumerate(task.args)]
    kwargs = {
        name: _decode_argument(f"kwargs[{name!r}]", a, task, fetch) for name, a in task.kwargs
    }
    return args, kwargs


def _decode_argument(label: str, arg: ArgSpec, task: TaskSpec, fetch: FetchBatch) -> Any:
    if arg.kind == "arrays":  # from the server, not the client
        return decode_arrays(json.loads(arg.data), task.fds, fetch)
    if arg.kind == "list":
        return [
            _decode_argument(f"{label}[{i}]", item, task, fetch) for i, item in enumerate(arg.items)
        ]
    if arg.kind == "dict":
        return {
            key: _decode_argument(f"{label}[{key!r}]", item, task, fetch)
            for key, item in zip(arg.keys, arg.items, strict=True)
        }
    if arg.kind == "item":
        return _item(label, arg)
    return _decode_leaf(label, arg)


def _decode_leaf(label: str, arg: ArgSpec) -> Any:
    try:
        if arg.kind == "json":
            return json.loads(arg.data)
        if arg.kind in ("arrow", "item"):
            return codec.from_ipc(arg.data)
        return cloudpickle.loads(arg.data)
    except Exception as exc:
        raise TaskFailure(
            "ERROR_REASON_ARGUMENT_INVALID",
            _cut(
                f"argument {label} ({arg.kind}) could not be decoded: {type(exc).__name__}: {exc}"
            ),
            argument=label,
        ) from None


def items_of(value: Any) -> Sequence[Any] | np.ndarray[Any, Any] | None:
    """The items a graph maps over: a list's or tuple's members, a dict's values (in order),
    an array's rows along its first axis; None for anything else."""
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return value
    return None


def item_count(value: Any) -> int | None:
    """How many items ``value`` has (see :func:`items_of`), for the DONE frame."""
    items = items_of(value)
    return None if items is None else len(items)


def _item(label: str, arg: ArgSpec) -> Any:
    """Item ``arg.index`` of the Arrow value in ``arg.data``."""
    items = items_of(_decode_leaf(label, arg))
    if items is None or not 0 <= arg.index < len(items):
        raise TaskFailure(
            "ERROR_REASON_ARGUMENT_INVALID",
            f"argument {label} is item {arg.index} of a value that has "
            + ("no items" if items is None else f"{len(items)}"),
            argument=label,
        )
    return items[arg.index]


def call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call the UDF; anything it raises becomes UDF_RAISED with its traceback."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        raise udf_raised(exc) from None


class Counted:
    """Counts rows and batches of a batch iterator as it is consumed.

    ``streaming``: the UDF returned a generator, whose batches should leave as they are made.
    """

    def __init__(self, batches: Iterator[pa.RecordBatch], streaming: bool) -> None:
        self._batches = batches
        self.streaming = streaming
        self.rows = 0
        self.batches = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._batches:
            self.rows += batch.num_rows
            self.batches += 1
            yield batch


def encode_result(value: Any, max_batch_bytes: int) -> tuple[pa.Schema, Counted]:
    """Map the result to Arrow; failures inside a result generator count as UDF errors."""
    try:
        encoded = codec.encode(value, max_batch_bytes=max_batch_bytes)
    except codec.CodecError as exc:
        raise TaskFailure(
            "ERROR_REASON_RESULT_TYPE_UNSUPPORTED", _cut(str(exc)), result_type=type(value).__name__
        ) from None
    except BaseException as exc:
        raise udf_raised(exc) from None
    return encoded.schema, Counted(encoded.batches, isinstance(value, Iterator))


def write_stream(
    sock: socket.socket,
    schema: pa.Schema,
    batches: Counted,
    task: TaskSpec,
    sending: AbstractContextManager[object] | None = None,
) -> tuple[int, bytes]:
    """Write the result as one IPC stream in DATA frames, each sent holding ``sending`` (a lock
    shared with other threads sending frames on ``sock``), if given.

    Returns the stream's size in bytes and its last DATA frame, unsent: the caller sends it
    together with the task's final frames, so a small result costs the parent one wakeup.
    """
    sink = ChunkSink(sock, task.max_chunk_bytes, sending or contextlib.nullcontext())
    options = pa.ipc.IpcWriteOptions(compression=task.compression)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        try:
            for batch in batches:
                writer.write_batch(batch)
                if batches.streaming:
                    sink.flush()  # a generator's batch goes out now, not with a later one
        except codec.CodecError as exc:
            raise TaskFailure("ERROR_REASON_RESULT_TYPE_UNSUPPORTED", _cut(str(exc))) from None
        except BaseException as exc:
            raise udf_raised(exc) from None
    return sink.total, sink.take_frame()


class ChunkSink:
    """A write-only file object that cuts what pyarrow writes into DATA frames of bounded size."""

    def __init__(
        self, sock: socket.socket, limit: int, sending: AbstractContextManager[object]
    ) -> None:
        self._sock = sock
        self._limit = limit
        self._sending = sending  # held for each whole frame
        self._pending = bytearray()
        self.total = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            room = self._limit - len(self._pending)
            if len(view) < room:
                self._pending += view  # small pieces (IPC metadata, padding) are gathered
                break
            # A frame is full: send what is pending plus the start of this buffer, in place.
            with self._sending:
                send_frame(self._sock, FrameType.DATA, memoryview(self._pending), view[:room])
            self._pending = bytearray()
            view = view[room:]
        self.total += size
        return size

    def flush(self) -> None:
        if self._pending:
            with self._sending:
                send_frame(self._sock, FrameType.DATA, memoryview(self._pending))
            self._pending = bytearray()

    def take_frame(self) -> bytes:
        """The pending bytes as a DATA frame, not sent (empty when nothing is pending)."""
        if not self._pending:
            return b""
        frame = HEADER.pack(FrameType.DATA, len(self._pending)) + self._pending
        self._pending = bytearray()
        return frame

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


def send_frame(sock: socket.socket, kind: FrameType, *parts: memoryview | bytes) -> None:
    """Send one frame whose payload is ``parts`` joined, blocking until the parent has room
    (this is the backpressure)."""
    size = sum(len(part) for part in parts)
    buffers = [memoryview(HEADER.pack(kind, size)), *(memoryview(p) for p in parts if len(p))]
    while buffers:
        sent = sock.sendmsg(buffers)
        while buffers and sent >= len(buffers[0]):
            sent -= len(buffers[0])
            buffers.pop(0)
        if buffers and sent:
            buffers[0] = buffers[0][sent:]


def warm_up() -> None:
    """Exercise the task path once (unpickle, encode, write IPC) so that lazy initialisation and
    copy-on-write page faults happen before a worker reports READY, not during a client's call."""
    fn = cloudpickle.loads(cloudpickle.dumps(lambda: 1))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        for value in (fn(), {"a": [1.0]}, np.arange(8)):
            schema, batches = encode_result(value, 1 << 16)
            _, tail = write_stream(ours, schema, batches, TaskSpec(udf_kind="source", udf=b""))
            ours.sendall(tail)
            theirs.recv(1 << 16)  # drain, so the small socket buffer never fills
