"""One Python value (not an iterator) -> an ``Item``: its kind, schema and record batches.

Batches are produced lazily and hold about ``max_batch_bytes`` each: row ranges of the value,
sliced zero-copy where Arrow and numpy allow it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa

from ._arrow import NUMPY_OF_ARROW, from_numpy, from_objects
from ._columns import ArrayColumn
from ._errors import UnsupportedTypeError, type_name
from ._json import to_json
from ._metadata import JSON_COLUMN, VALUE_COLUMN, VALUES_COLUMN, Kind

SUPPORTED = (
    "numpy arrays and scalars, None, bool, int, float, complex, str, bytes, dicts of numpy "
    "arrays, JSON-like lists, tuples and dicts, pyarrow Tables and RecordBatches, pandas "
    "DataFrames, and iterators (generators) of these"
)
_INT64 = range(-(2**63), 2**63)
_UINT64 = range(2**64)
_SCALAR_TYPES: tuple[tuple[type, pa.DataType], ...] = (
    (bool, pa.bool_()),  # before int: bool is an int
    (float, pa.float64()),
    (str, pa.string()),
    (bytes, pa.binary()),
)


@dataclass(frozen=True)
class Item:
    """One value mapped to Arrow, before the codec's schema metadata is added."""

    kind: Kind
    """What the value was; becomes ``tilefn.kind``."""
    schema: pa.Schema
    """The value's fields (with field metadata) and its own schema metadata, if any."""
    batches: Iterator[pa.RecordBatch]
    """The value's rows, about ``max_batch_bytes`` per batch, produced on demand."""


def encode_item(value: object, max_batch_bytes: int, index: int | None) -> Item:
    """Map one value to Arrow; ``index`` is its position in a stream (None: not in one)."""
    for encoder in (_numpy_item, _tabular_item, _plain_item):
        item = encoder(value, max_batch_bytes, index)
        if item is not None:
            return item
    raise UnsupportedTypeError(unsupported_message(value))


def unsupported_message(value: object) -> str:
    """The message for a value with no Arrow mapping."""
    return f"cannot convert a value of type {type_name(value)!r} to Arrow; supported: {SUPPORTED}"


def rows_per_batch(row_nbytes: int, max_batch_bytes: int) -> int:
    """How many rows of ``row_nbytes`` each fill about ``max_batch_bytes`` (at least one)."""
    if row_nbytes <= 0:
        return sys.maxsize
    return max(1, max_batch_bytes // row_nbytes)


def row_ranges(rows: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of ``step`` rows; one empty range when there are no rows, so
    that readers still see a batch."""
    if rows == 0:
        yield 0, 0
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def _numpy_item(value: object, max_batch_bytes: int, index: int | None) -> Item | None:
    """ndarrays, numpy scalars (and Python complex, as complex128), dicts of ndarrays."""
    if isinstance(value, np.ndarray):
        return _ndarray_item(value, max_batch_bytes, index)
    if isinstance(value, np.generic | complex):
        scalar = np.asarray(value if isinstance(value, np.generic) else np.complex128(value))
        column = ArrayColumn(VALUE_COLUMN, scalar, whole=False, max_batch_bytes=max_batch_bytes)
        return _columns_item(Kind.SCALAR, [column], max_batch_bytes)
    if _is_dict_of_arrays(value):
        return _dict_item(value, max_batch_bytes)
    return None


def _tabular_item(value: object, max_batch_bytes: int, index: int | None) -> Item | None:
    """pyarrow Tables and RecordBatches, pandas DataFrames."""
    if isinstance(value, pa.Table | pa.RecordBatch):
        kind = Kind.TABLE if isinstance(value, pa.Table) else Kind.RECORD_BATCH
        return Item(kind, value.schema, _table_batches(value, max_batch_bytes))
    if _is_dataframe(value):
        return _dataframe_item(value, max_batch_bytes)
    return None


def _plain_item(value: object, max_batch_bytes: int, index: int | None) -> Item | None:
    """Python scalars; lists, tuples, dicts and ints beyond 64 bits as JSON."""
    scalar_type = _scalar_type(value)
    if scalar_type is not None:
        return _single_row(Kind.SCALAR, pa.field(VALUE_COLUMN, scalar_type), value)
    if isinstance(value, list | tuple | dict | int):
        return _single_row(Kind.JSON, pa.field(JSON_COLUMN, pa.string()), to_json(value))
    return None


def _ndarray_item(value: np.ndarray[Any, Any], max_batch_bytes: int, index: int | None) -> Item:
    array = _plain_array(value)
    if index is not None and array.ndim == 0:
        raise UnsupportedTypeError(
            f"stream item {index} is a 0-d array; a stream concatenates arrays along axis 0, so "
            "yield arrays with ndim >= 1 (or numpy scalars, which stream as a list)"
        )
    whole = index is None
    column = ArrayColumn(VALUES_COLUMN, array, whole=whole, max_batch_bytes=max_batch_bytes)
    return _columns_item(Kind.NDARRAY, [column], max_batch_bytes)


def _plain_array(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if isinstance(array, np.ma.MaskedArray):  # its mask would be silently dropped
        raise UnsupportedTypeError(
            "cannot convert a value of type 'numpy.ma.MaskedArray' to Arrow; return "
            "array.filled(...) or the data and the mask as two arrays"
        )
    return np.asarray(array)  # np.matrix, memmap, ...: encode the plain ndarray


def _is_dict_of_arrays(value: object) -> TypeGuard[dict[str, np.ndarray[Any, Any]]]:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(key, str) for key in value)
        and all(isinstance(member, np.ndarray) for member in value.values())
    )


def _dict_item(value: dict[str, np.ndarray[Any, Any]], max_batch_bytes: int) -> Item:
    for key, array in value.items():
        if array.ndim == 0:
            raise UnsupportedTypeError(
                f"cannot convert a dict of arrays to Arrow: value {key!r} is a 0-d array; every "
                "value needs ndim >= 1 (rows along axis 0)"
            )
    lengths = {key: array.shape[0] for key, array in value.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key!r}: {length}" for key, length in lengths.items())
        raise UnsupportedTypeError(
            f"cannot convert a dict of arrays with unequal lengths ({listed}) to Arrow; every "
            "array needs the same shape[0]"
        )
    columns = [
        ArrayColumn(key, _plain_array(array), whole=False, max_batch_bytes=max_batch_bytes)
        for key, array in value.items()
    ]
    return _columns_item(Kind.DICT, columns, max_batch_bytes)


def _columns_item(kind: Kind, columns: list[ArrayColumn], max_batch_bytes: int) -> Item:
    schema = pa.schema([column.field for column in columns])
    step = rows_per_batch(sum(column.row_nbytes for column in columns), max_batch_bytes)
    return Item(kind, schema, _column_batches(schema, columns, step))


def _column_batches(
    schema: pa.Schema, columns: list[ArrayColumn], step: int
) -> Iterator[pa.RecordBatch]:
    for start, stop in row_ranges(columns[0].rows, step):
        arrays = [column.column(start, stop) for column in columns]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _table_batches(
    value: pa.Table | pa.RecordBatch, max_batch_bytes: int
) -> Iterator[pa.RecordBatch]:
    rows = value.num_rows
    step = rows_per_batch(-(-value.nbytes // rows) if rows else 0, max_batch_bytes)
    if isinstance(value, pa.Table):
        yield from value.to_batches(max_chunksize=step)
        return
    for start, stop in row_ranges(rows, step):
        yield value.slice(start, stop - start)


def _is_dataframe(value: object) -> bool:
    # Only values whose type comes from pandas import it: the worker must not pay for pandas.
    if not type(value).__module__.startswith("pandas"):
        return False
    import pandas as pd

    return isinstance(value, pd.DataFrame)


def _dataframe_item(value: Any, max_batch_bytes: int) -> Item:
    try:
        table = pa.Table.from_pandas(value)
    except pa.ArrowException as exc:  # e.g. an object column of mixed types
        raise UnsupportedTypeError(f"cannot convert a pandas DataFrame to Arrow: {exc}") from exc
    return Item(Kind.DATAFRAME, table.schema, _table_batches(table, max_batch_bytes))


def _scalar_type(value: object) -> pa.DataType | None:
    """The Arrow type of a Python scalar; None for other values and ints beyond 64 bits."""
    if value is None:
        return pa.null()
    for cls, arrow_type in _SCALAR_TYPES:
        if isinstance(value, cls):
            return arrow_type
    if isinstance(value, int):
        if value in _INT64:
            return pa.int64()
        if value in _UINT64:
            return pa.uint64()
    return None


def _single_row(kind: Kind, field: pa.Field, value: object) -> Item:
    schema = pa.schema([field])
    if value is None:
        array = pa.nulls(1)
    elif isinstance(value, str | bytes):
        array = from_objects(field.type, [value])
    else:
        array = from_numpy(field.type, np.array([value], dtype=NUMPY_OF_ARROW[field.type]))
    batch = pa.RecordBatch.from_arrays([array], schema=schema)
    return Item(kind, schema, iter([batch]))
