"""Runs inside the worker: turn array payloads (sealed memfds from the server) into numpy.

Fixed-size columns become read-only numpy views of a read-only mapping: no copy, no pickling,
and no way to change the data. Variable-length columns (Arrow IPC in the memfd) become object
arrays of str/bytes (a null arrives as "", as in a local tiledb-py read). A batched read
becomes an iterator that asks the server for one block at a time.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

#: Asks the parent for the next block of batched array stream i: (descriptor, fds) or None.
FetchBatch = Callable[[int], tuple[bytes, tuple[int, ...]] | None]
ArrayDict = OrderedDict[str, np.ndarray]


def decode_arrays(descriptor: dict[str, Any], fds: tuple[int, ...], fetch: FetchBatch) -> Any:
    """The value of an "arrays" argument: one ordered dict (or iterator of them), or a list."""
    results = [
        _batches(spec["stream"], fetch) if "stream" in spec else _array(spec, fds)
        for spec in descriptor["arrays"]
    ]
    return results if descriptor["as_list"] else results[0]


def _batches(stream: int, fetch: FetchBatch) -> Iterator[ArrayDict]:
    """Yield each block of a batched read, fetched only when the UDF asks for it."""
    while (batch := fetch(stream)) is not None:
        payload, fds = batch
        try:
            spec = json.loads(payload)
            yield _array(spec, fds)
        finally:
            for fd in fds:
                os.close(fd)


def _array(spec: dict[str, Any], fds: tuple[int, ...]) -> ArrayDict:
    shape = spec["shape"]
    result: ArrayDict = OrderedDict()
    for column in spec["columns"]:
        flat = _column(column, fds[column["fd"]])
        result[column["name"]] = flat.reshape(shape) if shape is not None else flat
    return result


def _column(column: dict[str, Any], fd: int) -> np.ndarray:
    size = column["size"]
    if column["kind"] == "raw":
        dtype = np.dtype(column["dtype"])
        if size == 0:
            empty = np.empty(0, dtype)
            empty.flags.writeable = False
            return empty
        view = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        return np.frombuffer(view, dtype=dtype)
    if size == 0:
        return np.empty(0, dtype=object)
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as view:
        table = pa.ipc.open_stream(pa.py_buffer(view)).read_all()
        values = table.column(0).to_numpy(zero_copy_only=False)
        del table
    return np.asarray(values, dtype=object)
