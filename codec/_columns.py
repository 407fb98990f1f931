"""One numpy array <-> one Arrow column.

An array of shape ``(n, *item_shape)`` becomes a column of ``n`` rows (a 0-d array: one row).
When the items are not scalars, or the dtype is complex, each row is a ``fixed_size_list`` of the
item's elements in C order (a complex element as a real, imaginary pair of floats). The field
metadata records the numpy dtype and the item shape, so decoding restores both exactly.

Rows are converted on demand, one row range per record batch: numeric data is shared with numpy
(zero-copy) and strings are copied one batch at a time, so memory stays bounded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ._arrow import ARROW_OF_NUMPY, from_numpy, to_numpy
from ._errors import CodecError, UnsupportedTypeError, type_name
from ._metadata import DTYPE, ITEM_SHAPE, SHAPE, read_key

_TIME_UNITS = frozenset({"s", "ms", "us", "ns"})
# utf8/binary offsets are int32: use the 64-bit layouts well before one batch could overflow them.
_LARGE_BATCH_BYTES = 1 << 30
_STRING_DTYPES: dict[str, np.dtype[Any]] = {
    "StringDType()": np.dtypes.StringDType(),
    "StringDType(na_object=None)": np.dtypes.StringDType(na_object=None),
    "StringDType(na_object=nan)": np.dtypes.StringDType(na_object=np.nan),
}


def _same(flat: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return flat


@dataclass(frozen=True)
class _Storage:
    """How the elements of one dtype are laid out in Arrow."""

    value_type: pa.DataType
    element_nbytes: int  # estimated Arrow bytes per numpy element
    pairs: bool = False  # complex: one element is two floats
    # Turns flat, contiguous, native-order elements into what from_numpy takes for value_type.
    prepare: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] = _same


class ArrayColumn:
    """One ndarray as one Arrow column whose rows are converted a range at a time."""

    def __init__(
        self, name: str, array: np.ndarray[Any, Any], *, whole: bool, max_batch_bytes: int
    ) -> None:
        """``whole``: the column is a whole ndarray result, so its full shape is recorded too
        (stream items and dict values vary in length and record only their item shape)."""
        self._array = array if array.ndim else array.reshape(1)
        self.rows: int = self._array.shape[0]
        item_elements = math.prod(array.shape[1:])
        self._storage = _storage(array, item_elements, max_batch_bytes)
        self._list_size = item_elements * (2 if self._storage.pairs else 1)
        self._as_list = array.ndim >= 2 or self._storage.pairs
        value_type = self._storage.value_type
        arrow_type = pa.list_(value_type, self._list_size) if self._as_list else value_type
        self.field: pa.Field = pa.field(name, arrow_type, metadata=_metadata(array, whole))
        self.row_nbytes: int = self._storage.element_nbytes * item_elements

    def column(self, start: int, stop: int) -> pa.Array:
        """Rows ``start:stop`` as an Arrow array of this column's field type."""
        # Only the slice is made contiguous (Fortran order, strides): memory stays per batch.
        part = np.ascontiguousarray(self._array[start:stop]).reshape(-1)
        if not part.dtype.isnative:
            part = part.astype(part.dtype.newbyteorder("="))  # pyarrow takes native order only
        values = from_numpy(self._storage.value_type, self._storage.prepare(part))
        if not self._as_list:
            return values
        if self._list_size == 0:
            # from_arrays cannot infer the row count of zero-size lists.
            return pa.Array.from_buffers(self.field.type, stop - start, [None], children=[values])
        return pa.FixedSizeListArray.from_arrays(values, self._list_size)


def dtype_text(dtype: np.dtype[Any]) -> str:
    """The ``tilefn.dtype`` value of a dtype: ``dtype.str``, or ``StringDType(...)``."""
    if dtype.kind != "T":
        return dtype.str
    if not hasattr(dtype, "na_object"):
        return "StringDType()"
    return f"StringDType(na_object={dtype.na_object!r})"


def _metadata(array: np.ndarray[Any, Any], whole: bool) -> dict[str, str]:
    metadata = {DTYPE: dtype_text(array.dtype), ITEM_SHAPE: json.dumps(list(array.shape[1:]))}
    if whole:
        metadata[SHAPE] = json.dumps(list(array.shape))
    return metadata


def _storage(array: np.ndarray[Any, Any], item_elements: int, max_batch_bytes: int) -> _Storage:
    dtype = array.dtype
    if dtype.kind in "biuf":
        return _Storage(_arrow_type(dtype), dtype.itemsize)
    if dtype.kind == "c" and dtype.itemsize in (8, 16):  # not complex256
        float_dtype = np.dtype(f"f{dtype.itemsize // 2}")
        return _Storage(
            _arrow_type(float_dtype), dtype.itemsize, True, lambda flat: flat.view(float_dtype)
        )
    if dtype.kind in "mM":
        return _time_storage(dtype)
    if dtype.kind in "USTO":
        return _text_storage(array, item_elements, max_batch_bytes)
    raise UnsupportedTypeError(_element_message(dtype))


def _arrow_type(dtype: np.dtype[Any]) -> pa.DataType:
    arrow_type = ARROW_OF_NUMPY.get(dtype.newbyteorder("="))
    if arrow_type is None:  # e.g. float128
        raise UnsupportedTypeError(_element_message(dtype))
    return arrow_type


def _time_storage(dtype: np.dtype[Any]) -> _Storage:
    unit, count = np.datetime_data(dtype)
    if count == 1 and unit in _TIME_UNITS:
        return _Storage(pa.timestamp(unit) if dtype.kind == "M" else pa.duration(unit), 8)
    if count == 1 and unit == "D" and dtype.kind == "M":
        return _Storage(pa.date32(), 4)
    # Arrow has no type for this unit: send the raw int64 ticks (NaT is int64 min);
    # the dtype metadata turns them back into the same datetime64/timedelta64.
    return _Storage(pa.int64(), 8, prepare=lambda flat: flat.view(np.int64))


def _text_storage(
    array: np.ndarray[Any, Any], item_elements: int, max_batch_bytes: int
) -> _Storage:
    kind = array.dtype.kind
    if kind == "O":
        binary, element_nbytes = _scan_objects(array)
    elif kind == "T":
        _check_na_object(array.dtype)
        binary, element_nbytes = False, _mean_length(array)
    else:
        # itemsize bounds the UTF-8 size too: numpy spends 4 bytes per character.
        binary, element_nbytes = kind == "S", array.dtype.itemsize
    large = max(max_batch_bytes, element_nbytes * item_elements) >= _LARGE_BATCH_BYTES
    if binary:
        value_type = pa.large_binary() if large else pa.binary()
    else:
        value_type = pa.large_string() if large else pa.string()
    return _Storage(value_type, element_nbytes + (8 if large else 4))


def _scan_objects(array: np.ndarray[Any, Any]) -> tuple[bool, int]:
    """Whether an object array holds bytes (else str), and its mean item length."""
    seen: set[type] = set()
    total = count = 0
    for item in array.flat:
        if item is None:
            continue
        if not isinstance(item, str | bytes):
            raise UnsupportedTypeError(
                f"cannot convert an object array holding {type_name(item)!r} items to Arrow; "
                "object arrays must hold only str or only bytes (None marks a missing value)"
            )
        seen.add(bytes if isinstance(item, bytes) else str)
        total += len(item)
        count += 1
    if len(seen) > 1:
        raise UnsupportedTypeError(
            "cannot convert an object array holding both 'str' and 'bytes' items to Arrow; "
            "object arrays must hold only str or only bytes (None marks a missing value)"
        )
    return seen == {bytes}, -(-total // max(count, 1))


def _check_na_object(dtype: np.dtype[Any]) -> None:
    if dtype_text(dtype) not in _STRING_DTYPES:
        raise UnsupportedTypeError(
            f"cannot convert an array of dtype {dtype!r} to Arrow; "
            "StringDType arrays may use na_object=None or na_object=nan only"
        )


def _mean_length(array: np.ndarray[Any, Any]) -> int:
    lengths = [len(item) for item in array.flat if isinstance(item, str)]
    return -(-sum(lengths) // max(len(lengths), 1))


def _element_message(dtype: np.dtype[Any]) -> str:
    what = "structured" if dtype.fields is not None else dtype.kind
    return (
        f"cannot convert an array of dtype {dtype} ({what}) to Arrow; supported element types: "
        "bool, int, uint, float16/32/64, complex64/128, datetime64, timedelta64, str (U, "
        "StringDType), bytes (S), and object arrays of only str or only bytes"
    )


def to_ndarray(
    field: pa.Field, chunks: Sequence[pa.Array], shape: Sequence[int] | None = None
) -> np.ndarray[Any, Any]:
    """The ndarray held by one column's chunks; ``shape`` overrides ``(rows, *item_shape)``."""
    dtype = read_dtype(field)
    pairs = dtype is not None and dtype.kind == "c"
    item_shape = _read_item_shape(field, pairs)
    rows = sum(len(chunk) for chunk in chunks)
    elements = [chunk.flatten() if _is_list(chunk.type) else chunk for chunk in chunks]
    if not elements:
        value_type = field.type.value_type if _is_list(field.type) else field.type
        elements = [pa.nulls(0, type=value_type)]
    flat = _to_numpy(elements, dtype)
    expected = rows * math.prod(item_shape)
    if flat.size != expected:
        raise CodecError(
            f"column {field.name!r} holds {flat.size} elements, but {rows} rows of item shape "
            f"{list(item_shape)} need {expected}"
        )
    array = flat.reshape((rows, *item_shape))
    if shape is not None:
        if math.prod(shape) != array.size:
            raise CodecError(f"column {field.name!r} cannot take shape {list(shape)}")
        array = array.reshape(tuple(shape))
    return array


def read_dtype(field: pa.Field) -> np.dtype[Any] | None:
    """The dtype named by a field's ``tilefn.dtype``, or None when it has none."""
    text = read_key(field, DTYPE)
    if text is None:
        return None
    if text in _STRING_DTYPES:
        return _STRING_DTYPES[text]
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise CodecError(f"column {field.name!r} has an invalid tilefn.dtype {text!r}") from None
    if dtype.kind not in "biufcmMUSO" or dtype.fields is not None:
        raise CodecError(f"column {field.name!r} has an unsupported tilefn.dtype {text!r}")
    return dtype


def read_shape(owner: pa.Field, key: str) -> list[int] | None:
    """A JSON shape stored under ``key`` in a field's metadata, or None when absent."""
    text = read_key(owner, key)
    if text is None:
        return None
    try:
        shape = json.loads(text)
    except ValueError:
        shape = None
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise CodecError(f"column {owner.name!r} has an invalid {key} {text!r}")
    return shape


def _read_item_shape(field: pa.Field, pairs: bool) -> tuple[int, ...]:
    item_shape = read_shape(field, ITEM_SHAPE)
    if item_shape is not None:
        return tuple(item_shape)
    # Written by a foreign client without tilefn metadata: a list column is one trailing axis.
    if pairs:
        raise CodecError(f"complex column {field.name!r} has no {ITEM_SHAPE}")
    return (field.type.list_size,) if _is_list(field.type) else ()


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_fixed_size_list(arrow_type))


def _to_numpy(chunks: list[pa.Array], dtype: np.dtype[Any] | None) -> np.ndarray[Any, Any]:
    """The elements of all chunks as one fresh (writable) 1-d array of ``dtype``."""
    if dtype is None:
        return np.concatenate([to_numpy(chunk) for chunk in chunks])
    native = dtype if dtype.isnative else dtype.newbyteorder("=")
    out = np.empty(sum(len(chunk) for chunk in chunks), dtype=_storage_dtype(native))
    position = 0
    for chunk in chunks:
        out[position : position + len(chunk)] = to_numpy(chunk)
        position += len(chunk)
    return _restore(out, native).astype(dtype, copy=False)


def _storage_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The numpy dtype of the Arrow elements that hold values of ``dtype``."""
    if dtype.kind == "c":
        return np.dtype(f"f{dtype.itemsize // 2}")
    if dtype.kind in "mM" and _time_storage(dtype).value_type == pa.int64():  # raw ticks
        return np.dtype(np.int64)
    if dtype.kind in "USTO":
        return np.dtype(object)
    return dtype


def _restore(out: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Turn the elements as stored back into values of ``dtype``."""
    if dtype.kind in "cmM":
        return out.view(dtype)  # float pairs / int64 ticks; no-op for native time units
    na_object: object = getattr(dtype, "na_object", None)
    if dtype.kind == "T" and na_object is not None:
        # Arrow null -> nan (astype would turn None into the string 'None').
        out[np.fromiter((item is None for item in out), dtype=bool, count=len(out))] = na_object
    if dtype.kind in "UST":
        return out.astype(dtype)
    return out
