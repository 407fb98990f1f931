"""The trusted array read: tiledb-py reads a plan in bounded blocks into sealed memfds.

Each column of the result goes to its own memfd, appended block by block, so the server holds at
most one block in memory however large the read is; the memfd pages belong to the kernel's shmem,
not to the server's heap. Fixed-size columns are raw little-endian buffers the worker maps
read-only as numpy views; variable-length columns (strings, bytes) are Arrow IPC streams. The
memfds are sealed before any worker sees them, so nobody can change the data afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import tiledb

from ._ranges import Pair, ReadPlan
from ._status import R, ServiceError

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
VAR_CELL_ESTIMATE = 16


class Budget:
    """Bytes of array data one execution may hand to its worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, size: int, array: str) -> None:
        self.used += size
        if self.used > self.limit:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_READ_TOO_LARGE,
                f"reading {array} needs more than this server's array memory budget of "
                f"{self.limit} bytes per execution; read a smaller range, fewer attributes, "
                "or filter with a query condition",
                array=array,
                budget_bytes=str(self.limit),
            )


@dataclass
class Column:
    """One result column in a memfd."""

    name: str
    kind: str  # "raw" (numpy buffer) or "arrow" (IPC stream of variable-length values)
    dtype: str
    fd: int
    size: int = 0
    writer: Any = None


@dataclass
class ArrayPayload:
    """One array's read result, ready to hand to a worker."""

    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None

    def descriptor(self, first_fd: int) -> dict[str, Any]:
        """The JSON description the worker decodes; fds are numbered from first_fd."""
        columns = [
            {"name": c.name, "kind": c.kind, "dtype": c.dtype, "fd": first_fd + i, "size": c.size}
            for i, c in enumerate(self.columns.values())
        ]
        return {"array": self.name, "columns": columns, "shape": self.shape}

    def fds(self) -> list[int]:
        return [c.fd for c in self.columns.values()]

    def close(self) -> None:
        for column in self.columns.values():
            os.close(column.fd)
        self.columns.clear()


def read(array: tiledb.Array, plan: ReadPlan, budget: Budget, block_bytes: int) -> ArrayPayload:
    """Run the plan (blocking) and return its sealed payload, however many blocks it takes.

    The next block is read while the current one is copied into the memfds, so at most two
    blocks are in memory at once.
    """
    # Closed here, not whenever the generator is collected: the caller closes the array next.
    with contextlib.closing(_read_ahead(blocks(array, plan, block_bytes))) as source:
        if array.schema.sparse:
            return _fill(plan, source, budget)
        if plan.order in ("C", "F"):
            return _fill(plan, source, budget, _dense_shape(array, plan))
        return _fill(plan, source, budget, "block")


def _read_ahead(source: Iterator[dict[str, Any]]) -> Generator[dict[str, Any], None, None]:
    """``source``, with its next item produced in a thread while the caller uses this one.

    Daemon threads, like the read itself: a read stuck in storage never holds up shutdown.
    """
    pending = _in_daemon_thread(next, source, None)
    try:
        while (item := pending.result()) is not None:
            pending = _in_daemon_thread(next, source, None)
            yield item
    finally:
        pending.exception()  # the caller may close the array next: let the read finish first


def _in_daemon_thread(work: Callable[..., Any], *args: Any) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work(*args))
        except BaseException as exc:  # handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="tilefn-read-ahead", daemon=True).start()
    return future


def read_batches(
    array: tiledb.Array, plan: ReadPlan, block_bytes: int, budget_bytes: int
) -> Iterator[ArrayPayload]:
    """Run the plan (blocking, lazily): one sealed payload per block, for a UDF's iterator."""
    for block in blocks(array, plan, block_bytes):
        yield _fill(plan, iter([block]), Budget(budget_bytes), "block")


def blocks(array: tiledb.Array, plan: ReadPlan, block_bytes: int) -> Iterator[dict[str, Any]]:
    """The plan's result in blocks of about block_bytes, in order."""
    if array.schema.sparse:
        return _tiledb_errors(plan, _sparse_blocks(array, plan))
    return _tiledb_errors(plan, _dense_blocks(array, plan, block_bytes))


def _fill(
    plan: ReadPlan,
    source: Iterator[dict[str, Any]],
    budget: Budget,
    shape: tuple[int, ...] | Literal["block"] | None = None,
) -> ArrayPayload:
    """Append blocks to a new payload's columns and seal it; closes fds on failure.

    ``shape`` is the final N-d shape, None for flat (sparse) columns, or "block" to take it from
    the one block there is.
    """
    payload = ArrayPayload(plan.ref.name)
    payload.shape = shape if shape != "block" else None
    try:
        for block in source:
            if shape == "block" and block:
                payload.shape = next(iter(block.values())).shape
            for name, values in block.items():
                _append(payload, name, values, budget)
        for column in payload.columns.values():
            _finish(column)
    except BaseException:
        payload.close()
        raise
    return payload


def _tiledb_errors(plan: ReadPlan, blocks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Turn TileDB's complaints into errors a client can act on (without server paths)."""
    try:
        yield from blocks
    except tiledb.TileDBError as exc:
        text = str(exc)
        message = _first_line(text).replace(plan.ref.storage_uri, plan.ref.name)
        if "QueryCondition" in text or "query_condition" in text:
            reason = R.ERROR_REASON_ARRAY_CONDITION_INVALID
        elif "range" in message.lower() or "domain" in message.lower():
            reason = R.ERROR_REASON_ARRAY_RANGE_INVALID
        else:
            reason = R.ERROR_REASON_ARRAY_READ_FAILED
        raise ServiceError(reason, f"{plan.ref.name}: {message}", array=plan.ref.name) from None


def _first_line(text: str) -> str:
    """TileDB's message without the Python traceback and source paths it may append."""
    line = text.strip().split("\n", 1)[0].removeprefix("TileDBError: ")
    return re.sub(r"\s*\(/[^)]*\)$", "", line)[:500]


def _query(array: tiledb.Array, plan: ReadPlan, **extra: Any) -> Any:
    return array.query(
        attrs=list(plan.attrs), dims=list(plan.dims), order=plan.order, cond=plan.condition, **extra
    )


def _subscripts(ranges: tuple[tuple[Pair, ...] | None, ...]) -> tuple[Any, ...]:
    return tuple(slice(None) if r is None else [slice(s, e) for s, e in r] for r in ranges)


def _sparse_blocks(array: tiledb.Array, plan: ReadPlan) -> Iterator[dict[str, Any]]:
    # Incomplete queries return results in buffers of py.init_buffer_bytes (set on the context).
    # A cell bigger than those buffers makes TileDB return nothing, again and again: stop then.
    empty_in_a_row = 0
    for block in _query(array, plan, return_incomplete=True).multi_index[_subscripts(plan.ranges)]:
        rows = len(next(iter(block.values()))) if block else 0
        empty_in_a_row = 0 if rows else empty_in_a_row + 1
        if empty_in_a_row > 2:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_READ_TOO_LARGE,
                f"{plan.ref.name}: a cell is larger than the server's read buffer; the operator "
                "can raise --read-block-bytes",
                array=plan.ref.name,
                budget_bytes=str(array.ctx.config()["py.init_buffer_bytes"]),
            )
        yield block


def _full_ranges(array: tiledb.Array, plan: ReadPlan) -> list[tuple[Pair, ...]]:
    domain = array.schema.domain
    return [
        r if r is not None else (tuple(domain.dim(i).domain),) for i, r in enumerate(plan.ranges)
    ]


def _dense_shape(array: tiledb.Array, plan: ReadPlan) -> tuple[int, ...]:
    """The shape tiledb-py gives a dense selection: each dimension's range lengths, summed."""
    return tuple(sum(_length(p) for p in pairs) for pairs in _full_ranges(array, plan))


def _dense_blocks(
    array: tiledb.Array, plan: ReadPlan, block_bytes: int
) -> Iterator[dict[str, Any]]:
    if plan.order not in ("C", "F"):
        yield _query(array, plan).multi_index[_subscripts(plan.ranges)]
        return
    full = _full_ranges(array, plan)
    shape = _dense_shape(array, plan)
    # tiledb-py hands back a col-major read as its raw column-major buffer in a C-shaped array;
    # blocks along the last axis concatenate to that same buffer, so results match a local read.
    axis = 0 if plan.order == "C" else len(full) - 1
    others = math.prod(n for i, n in enumerate(shape) if i != axis)
    step = max(1, block_bytes // max(1, others * _cell_bytes(array, plan)))
    for pair in full[axis]:
        for block in _split(pair, step):
            ranges = list(plan.ranges)
            ranges[axis] = (block,)
            yield _query(array, plan).multi_index[_subscripts(tuple(ranges))]


def _length(pair: Pair) -> int:
    start, end = pair
    return (
        int(np.int64(end) - np.int64(start)) + 1
        if not isinstance(start, np.datetime64)
        else (int((end - start).astype(np.int64)) + 1)
    )


def _split(pair: Pair, step: int) -> Iterator[Pair]:
    start, end = pair
    while start <= end:
        stop = min(end, start + (step - 1))
        yield (start, stop)
        start = stop + 1


def _cell_bytes(array: tiledb.Array, plan: ReadPlan) -> int:
    schema = array.schema
    sizes = [schema.attr(n).dtype.itemsize or VAR_CELL_ESTIMATE for n in plan.attrs]
    sizes += [schema.domain.dim(n).dtype.itemsize or VAR_CELL_ESTIMATE for n in plan.dims]
    return max(1, sum(sizes))


def _append(payload: ArrayPayload, name: str, values: np.ndarray, budget: Budget) -> None:
    column = payload.columns.get(name)
    if column is None:
        column = _new_column(payload, name, values)
    if column.kind == "raw":
        flat = values.ravel()
        budget.charge(flat.nbytes, payload.name)
        _write_all(column.fd, flat.view(np.uint8).data)
        column.size += flat.nbytes
    else:
        flat = values.ravel()
        batch = pa.record_batch([pa.array(flat, column.writer[1])], ["v"])
        budget.charge(batch.nbytes, payload.name)
        column.writer[0].write_batch(batch)


def _new_column(payload: ArrayPayload, name: str, values: np.ndarray) -> Column:
    fd = os.memfd_create(f"tilefn-{name}"[:200], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    if values.dtype != object:
        column = Column(name, "raw", values.dtype.str, fd)
    else:
        strings = any(isinstance(v, str) for v in np.ravel(values)[:64])
        kind = pa.large_string() if strings else pa.large_binary()
        sink = os.fdopen(os.dup(fd), "wb")
        writer = pa.ipc.new_stream(sink, pa.schema([("v", kind)]))
        column = Column(name, "arrow", "object", fd, writer=(writer, kind, sink))
    payload.columns[name] = column
    return column


def _finish(column: Column) -> None:
    if column.writer is not None:
        writer, _, sink = column.writer
        writer.close()
        sink.close()
        column.writer = None
        column.size = os.fstat(column.fd).st_size
    fcntl.fcntl(column.fd, fcntl.F_ADD_SEALS, SEALS)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]
