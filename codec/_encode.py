"""Python value -> Arrow schema + lazily produced record batches.

    value ──► iterator? ──no──► encode_item ──► schema + tilefn metadata, batches
                 │
                 yes: pull item 0 ─► encode_item ─► schema (tilefn.stream = true)
                      batches: item 0's, then each later item pulled, encoded and checked
                      against item 0's schema only when the consumer gets that far

Exceptions raised by a generator itself propagate unchanged, from ``encode`` (item 0) or
while iterating ``Encoded.batches`` (later items); the codec's own are ``CodecError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from ._columns import read_dtype
from ._errors import SchemaMismatchError, UnsupportedTypeError, type_name
from ._items import Item, encode_item
from ._metadata import ITEM_SHAPE, KIND, STREAM, Kind, read_key

DEFAULT_MAX_BATCH_BYTES = 1 << 20
# Tables from pandas carry per-item metadata (RangeIndex bounds): only their columns must agree.
_TABLE_KINDS = frozenset({Kind.TABLE, Kind.RECORD_BATCH, Kind.DATAFRAME})
_MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class Encoded:
    """A value mapped to Arrow: write ``schema``, then every batch, as one IPC stream."""

    schema: pa.Schema
    """The Arrow schema, with the tilefn metadata described in docs/results.md."""
    batches: Iterator[pa.RecordBatch]
    """The record batches, each about ``max_batch_bytes`` or less; produced as consumed, once."""


def encode(value: object, *, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> Encoded:
    """Map a Python value to an Arrow schema and record batches (docs/results.md).

    Generators and other iterators stream: only their first item is pulled here (to build the
    schema); later items are pulled as ``batches`` is consumed, so a result larger than memory
    can stream. Batches are sliced along axis 0 / rows to about ``max_batch_bytes`` each.

    Raises UnsupportedTypeError for a value with no mapping and SchemaMismatchError (while
    iterating ``batches``) for a stream item whose schema differs from the first item's.
    Nothing is ever pickled.
    """
    if max_batch_bytes < 1:
        raise ValueError(f"max_batch_bytes must be at least 1, not {max_batch_bytes}")
    if isinstance(value, Iterator):
        return _encode_stream(value, max_batch_bytes)
    item = encode_item(value, max_batch_bytes, None)
    schema = _with_kind(item.schema, item.kind, stream=False)
    return Encoded(schema, _restamped(item.batches, schema))


def _encode_stream(values: Iterator[object], max_batch_bytes: int) -> Encoded:
    try:
        first = next(values)
    except StopIteration:
        schema = _with_kind(pa.schema([]), Kind.EMPTY, stream=True)
        return Encoded(schema, iter(()))
    item = _stream_item(first, 0, max_batch_bytes)
    schema = _with_kind(item.schema, item.kind, stream=True)
    return Encoded(schema, _stream_batches(schema, item, values, max_batch_bytes))


def _stream_batches(
    schema: pa.Schema, first: Item, rest: Iterator[object], max_batch_bytes: int
) -> Iterator[pa.RecordBatch]:
    try:
        yield from _restamped(first.batches, schema)
        for index, value in enumerate(rest, start=1):
            item = _stream_item(value, index, max_batch_bytes)
            _check_matches(first, item, index)
            yield from _restamped(item.batches, schema)
    finally:
        # Stopped early (a mismatch, or the consumer gave up): run the generator's cleanup now.
        close = getattr(rest, "close", None)
        if callable(close):
            close()


def _stream_item(value: object, index: int, max_batch_bytes: int) -> Item:
    if isinstance(value, Iterator):
        raise UnsupportedTypeError(
            f"stream item {index} is itself an iterator ({type_name(value)!r}); "
            "yield arrays, tables or plain values"
        )
    return encode_item(value, max_batch_bytes, index)


def _check_matches(first: Item, item: Item, index: int) -> None:
    check_metadata = first.kind not in _TABLE_KINDS
    if item.kind == first.kind and item.schema.equals(first.schema, check_metadata=check_metadata):
        return
    raise SchemaMismatchError(
        f"stream item {index} does not match item 0: item {index} is {_describe(item)}, "
        f"item 0 is {_describe(first)}; every item of a stream must have the same schema "
        "(for arrays: the same dtype and shape[1:])"
    )


def _describe(item: Item) -> str:
    fields = []
    for field in item.schema:
        text = f"{field.name}: {field.type}"
        dtype = read_dtype(field)
        if dtype is not None:
            text += f" (dtype {dtype}, shape[1:] {read_key(field, ITEM_SHAPE)})"
        fields.append(text)
    description = f"{item.kind} [{', '.join(fields)}]"
    if len(description) > _MAX_DESCRIPTION:
        description = description[: _MAX_DESCRIPTION - 3] + "..."
    return description


def _with_kind(schema: pa.Schema, kind: Kind, *, stream: bool) -> pa.Schema:
    # Merge: a table's own metadata (pandas' included) must survive.
    metadata = dict(schema.metadata or {})
    metadata[KIND.encode()] = kind.value.encode()
    metadata[STREAM.encode()] = b"true" if stream else b"false"
    return schema.with_metadata(metadata)


def _restamped(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    # Batches carry the final schema's metadata, so consumers see one schema throughout.
    for batch in batches:
        yield batch.replace_schema_metadata(schema.metadata)
