"""Arrow schema + record batches -> the natural Python value (docs/results.md).

The schema's ``tilefn.kind`` says what to build; a schema without it is plain Arrow from a
foreign writer and decodes to a ``pyarrow.Table``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from ._columns import read_shape, to_ndarray
from ._errors import CodecError
from ._metadata import DTYPE, KIND, SCHEMA_KEYS, SHAPE, STREAM, Kind, read_key

_Decoder = Callable[[pa.Schema, list[pa.RecordBatch], bool], Any]


def decode(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Any:
    """The Python value encoded as ``schema`` and ``batches`` (for example, read from IPC).

    ndarrays come back with the same dtype and shape; streamed values come back concatenated
    (arrays, tables) or as a list (scalars, JSON). Raises CodecError for malformed input.
    """
    received = list(batches)
    kind_text = read_key(schema, KIND)
    if kind_text is None:
        return pa.Table.from_batches(received, schema=schema)
    try:
        kind = Kind(kind_text)
    except ValueError:
        known = ", ".join(kind.value for kind in Kind)
        raise CodecError(f"unknown {KIND} {kind_text!r}; this version knows {known}") from None
    stream = read_key(schema, STREAM) == "true"
    try:
        return _DECODERS[kind](schema, received, stream)
    except CodecError:
        raise
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise CodecError(f"cannot decode a {kind.value} result: {exc}") from exc


def _ndarray(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    field = _single_field(schema)
    shape = None if stream else read_shape(field, SHAPE)
    return to_ndarray(field, _chunks(batches, 0), shape)


def _dict(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    return {field.name: to_ndarray(field, _chunks(batches, i)) for i, field in enumerate(schema)}


def _scalar(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    field = _single_field(schema)
    chunks = _chunks(batches, 0)
    if read_key(field, DTYPE) is not None:
        values = list(to_ndarray(field, chunks))  # numpy scalars of the recorded dtype
    else:
        values = [value for chunk in chunks for value in chunk.to_pylist()]
    return values if stream else _only_row(values)


def _json(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    _single_field(schema)
    values = [json.loads(text) for chunk in _chunks(batches, 0) for text in chunk.to_pylist()]
    return values if stream else _only_row(values)


def _table(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    table = pa.Table.from_batches(batches, schema=schema)
    # Hand back the table's own metadata only, as it was before encoding.
    metadata = {k: v for k, v in (schema.metadata or {}).items() if k.decode() not in SCHEMA_KEYS}
    return table.replace_schema_metadata(metadata or None)


def _record_batch(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    table = _table(schema, batches, stream)
    if stream:
        return table
    columns = [column.combine_chunks() for column in table.columns]
    return pa.RecordBatch.from_arrays(columns, schema=table.schema)


def _dataframe(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    return _table(schema, batches, stream).to_pandas()


def _empty(schema: pa.Schema, batches: list[pa.RecordBatch], stream: bool) -> Any:
    return []


_DECODERS: dict[Kind, _Decoder] = {
    Kind.NDARRAY: _ndarray,
    Kind.DICT: _dict,
    Kind.SCALAR: _scalar,
    Kind.JSON: _json,
    Kind.TABLE: _table,
    Kind.RECORD_BATCH: _record_batch,
    Kind.DATAFRAME: _dataframe,
    Kind.EMPTY: _empty,
}


def _single_field(schema: pa.Schema) -> pa.Field:
    if len(schema) != 1:
        raise CodecError(f"a {read_key(schema, KIND)} result needs one column, not {len(schema)}")
    return schema.field(0)


def _chunks(batches: list[pa.RecordBatch], index: int) -> list[pa.Array]:
    return [batch.column(index) for batch in batches]


def _only_row(values: list[Any]) -> Any:
    if len(values) != 1:
        raise CodecError(f"a single value was encoded, but {len(values)} rows arrived")
    return values[0]
