"""numpy values <-> primitive Arrow arrays, built from and read through their buffers.

``pa.array``, ``pa.scalar`` and ``Array.to_numpy`` would do this too, but each imports pandas on
first use whenever it is installed (pyarrow's pandas shim): about half a second and tens of MiB
in every fresh worker. Building from buffers also makes the zero-copy explicit: fixed-width
columns share numpy's memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from ._errors import CodecError

NUMPY_OF_ARROW: dict[pa.DataType, np.dtype[Any]] = {
    arrow_type: np.dtype(name)
    for arrow_type, name in [
        (pa.bool_(), "bool"),
        (pa.int8(), "int8"),
        (pa.int16(), "int16"),
        (pa.int32(), "int32"),
        (pa.int64(), "int64"),
        (pa.uint8(), "uint8"),
        (pa.uint16(), "uint16"),
        (pa.uint32(), "uint32"),
        (pa.uint64(), "uint64"),
        (pa.float16(), "float16"),
        (pa.float32(), "float32"),
        (pa.float64(), "float64"),
    ]
}
ARROW_OF_NUMPY = {dtype: arrow_type for arrow_type, dtype in NUMPY_OF_ARROW.items()}
_LARGE_TYPES = (pa.large_string(), pa.large_binary())
_INT32 = np.iinfo(np.int32)


def from_numpy(value_type: pa.DataType, flat: np.ndarray[Any, Any]) -> pa.Array:
    """An Arrow array of ``value_type`` holding ``flat`` (1-d, contiguous, native byte order).

    ``value_type`` is a numeric, bool, timestamp, duration, date32, string or binary type
    matching ``flat``'s dtype; NaT and missing strings become nulls.
    """
    if _is_text(value_type):
        # tolist gives numpy's own items; pa.array would cut U/S items at their first NUL.
        return from_objects(value_type, flat.tolist())
    if pa.types.is_boolean(value_type):
        bits = np.packbits(flat, bitorder="little")
        return pa.Array.from_buffers(value_type, len(flat), [None, pa.py_buffer(bits)])
    valid = None
    if flat.dtype.kind in "mM":
        valid = ~np.isnat(flat)
        flat = flat.view(np.int64)  # numpy exports no buffer for datetime64
    if pa.types.is_date32(value_type):
        flat = _to_int32_days(flat, valid)
    return pa.Array.from_buffers(value_type, len(flat), [_bitmap(valid), pa.py_buffer(flat)])


def from_objects(value_type: pa.DataType, items: Iterable[object]) -> pa.Array:
    """A string or binary array of ``items``; anything but str and bytes becomes a null."""
    chunks: list[bytes] = []
    valid: list[bool] = []
    for item in items:
        data = _utf8(item) if isinstance(item, str) else item
        present = isinstance(data, bytes)
        chunks.append(data if isinstance(data, bytes) else b"")
        valid.append(present)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if value_type not in _LARGE_TYPES:
        if offsets[-1] > _INT32.max:
            raise CodecError(
                "a batch of strings is too large for one Arrow array; lower max_batch_bytes"
            )
        offsets = offsets.astype(np.int32)
    validity = _bitmap(np.array(valid, dtype=bool))
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(chunks))]
    return pa.Array.from_buffers(value_type, len(chunks), buffers)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
        raise CodecError(f"cannot encode the string {text!r} as UTF-8: {exc}") from None


def to_numpy(chunk: pa.Array) -> np.ndarray[Any, Any]:
    """The values of a primitive Arrow array as numpy (read-only when it shares Arrow memory).

    Strings and binaries come back as an object array (None for nulls), timestamps and durations
    as datetime64/timedelta64 (NaT for nulls), date32 as datetime64[D].
    """
    value_type = chunk.type
    if _is_text(value_type):
        values = np.empty(len(chunk), dtype=object)
        values[:] = chunk.to_pylist()
        return values
    if pa.types.is_boolean(value_type):
        return _bits(chunk.buffers()[1], chunk.offset, len(chunk)).astype(bool)
    values = _fixed_width(chunk)
    if chunk.null_count:
        if values.dtype.kind not in "mM":
            raise CodecError(f"an Arrow {value_type} column holds nulls, which numpy cannot hold")
        values = values.copy()
        missing = ~_bits(chunk.buffers()[0], chunk.offset, len(chunk))
        values.view(np.int64)[missing] = np.iinfo(np.int64).min  # NaT
    return values


def _fixed_width(chunk: pa.Array) -> np.ndarray[Any, Any]:
    value_type = chunk.type
    if value_type in NUMPY_OF_ARROW:
        dtype = NUMPY_OF_ARROW[value_type]
    elif pa.types.is_timestamp(value_type) or pa.types.is_duration(value_type):
        dtype = np.dtype(f"{'M' if pa.types.is_timestamp(value_type) else 'm'}8[{value_type.unit}]")
    elif pa.types.is_date32(value_type):
        days = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk), chunk.offset * 4)
        return days.astype("M8[D]")
    else:
        raise CodecError(f"an Arrow {value_type} column has no numpy array mapping")
    if len(chunk) == 0:
        return np.empty(0, dtype)
    buffer = chunk.buffers()[1]
    storage = np.int64 if dtype.kind in "mM" else dtype  # no frombuffer for datetime64
    values = np.frombuffer(buffer, storage, len(chunk), chunk.offset * dtype.itemsize)
    return values.view(dtype)


def _bits(buffer: pa.Buffer, offset: int, length: int) -> np.ndarray[Any, Any]:
    if length == 0:
        return np.zeros(0, dtype=bool)
    bytes_ = np.frombuffer(buffer, np.uint8)
    bits = np.unpackbits(bytes_, count=offset + length, bitorder="little")[offset:]
    return bits.astype(bool)


def _bitmap(valid: np.ndarray[Any, Any] | None) -> pa.Buffer | None:
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _to_int32_days(days: np.ndarray[Any, Any], valid: np.ndarray[Any, Any] | None) -> Any:
    present = days if valid is None else days[valid]
    if present.size and (present.min() < _INT32.min or present.max() > _INT32.max):
        raise CodecError("a datetime64[D] value is beyond Arrow date32's range")
    return days.astype(np.int32)


def _is_text(value_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(value_type)
        or pa.types.is_large_string(value_type)
        or pa.types.is_binary(value_type)
        or pa.types.is_large_binary(value_type)
    )
