"""Runs inside the worker: turn array payloads (sealed memfds from the server) into numpy.

Fixed-size columns become read-only numpy views of a read-only mapping: no copy, no pickling,
and no way to change the data. Variable-length columns (Arrow IPC in the memfd) become object
arrays of str/bytes (None for nulls), as a local tiledb-py read returns them.
"""

from __future__ import annotations

import mmap
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa


def decode_arrays(descriptor: dict[str, Any], fds: tuple[int, ...]) -> Any:
    """The value of an "arrays" argument: one ordered dict, or a list of them."""
    results = [_array(spec, fds) for spec in descriptor["arrays"]]
    return results if descriptor["as_list"] else results[0]


def _array(spec: dict[str, Any], fds: tuple[int, ...]) -> OrderedDict[str, np.ndarray]:
    shape, order = spec["shape"], spec["order"]
    result: OrderedDict[str, np.ndarray] = OrderedDict()
    for column in spec["columns"]:
        flat = _column(column, fds[column["fd"]])
        result[column["name"]] = flat.reshape(shape, order=order) if shape is not None else flat
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
