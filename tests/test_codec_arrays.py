"""tilefn.codec, ndarrays and scalars: every dtype and shape round-trips through Arrow IPC.

The helpers are in codec_support.py; the mapping is documented in docs/results.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tilefn import codec

from codec_support import (
    StringDType,
    assert_same_array,
    field_meta,
    read_ipc,
    roundtrip,
    schema_meta,
    schema_of,
    write_ipc,
)


def array_of(dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    size = math.prod(shape)
    values = np.arange(size) % 7
    if np.dtype(dtype).kind == "c":
        return (values + 1j * values[::-1]).astype(dtype).reshape(shape)
    return values.astype(dtype).reshape(shape)


NUMERIC_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    ">i4",
    ">f8",
    ">c16",
]


SHAPES = [(), (5,), (2, 3, 4)]


# --- ndarrays -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_numeric_arrays_round_trip(dtype: str, shape: tuple[int, ...]) -> None:
    array = array_of(dtype, shape)
    assert_same_array(roundtrip(array), array)


@pytest.mark.parametrize(
    "array",
    [
        np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max]),
        np.array([0, np.iinfo(np.uint64).max], dtype=np.uint64),
        np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324]),
        np.array([np.nan, np.inf], dtype=np.float16),
        np.array([complex(np.nan, np.inf), complex(-0.0, 1)], dtype=np.complex64),
    ],
    ids=["int64-limits", "uint64-limits", "float-specials", "float16-specials", "complex-specials"],
)
def test_extreme_values_round_trip(array: np.ndarray[Any, Any]) -> None:
    assert_same_array(roundtrip(array), array)


@pytest.mark.parametrize(
    ("dtype", "arrow_type"),
    [
        ("int8", pa.int8()),
        ("uint64", pa.uint64()),
        ("bool", pa.bool_()),
        ("float16", pa.float16()),
        ("float64", pa.float64()),
        (">i4", pa.int32()),
    ],
)
def test_element_types_are_native_arrow_types(dtype: str, arrow_type: pa.DataType) -> None:
    assert schema_of(array_of(dtype, (3,))).field(0).type == arrow_type


@pytest.mark.parametrize(
    ("shape", "arrow_type", "item_shape"),
    [
        ((), pa.float64(), []),
        ((4,), pa.float64(), []),
        ((4, 3), pa.list_(pa.float64(), 3), [3]),
        ((4, 3, 2), pa.list_(pa.float64(), 6), [3, 2]),
    ],
    ids=str,
)
def test_ndarray_layout_and_metadata(
    shape: tuple[int, ...], arrow_type: pa.DataType, item_shape: list[int]
) -> None:
    schema = schema_of(np.zeros(shape))
    assert schema_meta(schema) == {"tilefn.kind": "ndarray", "tilefn.stream": "false"}
    assert schema.names == ["values"]
    assert schema.field(0).type == arrow_type
    assert field_meta(schema.field(0)) == {
        "tilefn.dtype": "<f8",
        "tilefn.shape": json.dumps(list(shape)),
        "tilefn.item_shape": json.dumps(item_shape),
    }


@pytest.mark.parametrize(
    ("dtype", "arrow_type"),
    [("complex64", pa.list_(pa.float32(), 2)), ("complex128", pa.list_(pa.float64(), 2))],
)
def test_complex_is_a_trailing_pair_of_floats(dtype: str, arrow_type: pa.DataType) -> None:
    schema, batches = read_ipc(write_ipc(np.array([1 + 2j, 3 - 4j], dtype=dtype)))
    assert schema.field(0).type == arrow_type
    assert batches[0].column(0).to_pylist() == [[1.0, 2.0], [3.0, -4.0]]


def test_complex_2d_rows_hold_pairs_in_c_order() -> None:
    array = np.array([[1 + 2j, 3 + 4j], [5 + 6j, 7 + 8j]])
    schema, batches = read_ipc(write_ipc(array))
    assert schema.field(0).type == pa.list_(pa.float64(), 4)
    assert batches[0].column(0).to_pylist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert_same_array(codec.decode(schema, batches), array)


TIME_CASES = [
    ("M8[s]", pa.timestamp("s")),
    ("M8[ms]", pa.timestamp("ms")),
    ("M8[us]", pa.timestamp("us")),
    ("M8[ns]", pa.timestamp("ns")),
    ("M8[D]", pa.date32()),
    ("M8[M]", pa.int64()),
    ("M8[Y]", pa.int64()),
    ("M8[W]", pa.int64()),
    ("M8[h]", pa.int64()),
    ("M8[m]", pa.int64()),
    ("M8[10s]", pa.int64()),
    ("m8[s]", pa.duration("s")),
    ("m8[ms]", pa.duration("ms")),
    ("m8[us]", pa.duration("us")),
    ("m8[ns]", pa.duration("ns")),
    ("m8[D]", pa.int64()),
    ("m8[M]", pa.int64()),
    ("m8[h]", pa.int64()),
]


@pytest.mark.parametrize("shape", [(5,), (1, 5)], ids=str)
@pytest.mark.parametrize(("dtype", "arrow_type"), TIME_CASES, ids=[c[0] for c in TIME_CASES])
def test_datetimes_and_timedeltas_round_trip_with_nat(
    dtype: str, arrow_type: pa.DataType, shape: tuple[int, ...]
) -> None:
    array = np.array([0, 1, -3, 1000, 0], dtype="i8").astype(dtype)
    array[-1] = np.datetime64("NaT") if dtype.startswith("M") else np.timedelta64("NaT")
    array = array.reshape(shape)
    schema = schema_of(array)
    value_type = schema.field(0).type.value_type if len(shape) > 1 else schema.field(0).type
    assert value_type == arrow_type
    decoded = roundtrip(array)
    assert_same_array(decoded, array)
    assert np.isnat(decoded).sum() == 1


def test_nat_is_an_arrow_null_for_native_units() -> None:
    _, batches = read_ipc(write_ipc(np.array(["2024-01-02T03:04:05", "NaT"], dtype="M8[s]")))
    assert batches[0].column(0).null_count == 1


STRING_ARRAYS = {
    "unicode": np.array(["", "a", "héllo", "日本語", "x" * 40, "\x00a", "a\x00b"]),
    "unicode-itemsize-kept": np.array(["ab", "c"], dtype="<U5"),
    "unicode-big-endian": np.array(["ab", "c"], dtype=">U3"),
    "unicode-2d": np.array([["a", "bb"], ["ccc", ""]]),
    "bytes": np.array([b"", b"ab", b"\x00\xffz", b"a\x00b"]),
    "bytes-itemsize-kept": np.array([b"a"], dtype="S7"),
    "stringdtype": np.array(["a", "héllo", "", "\x00a"], dtype=StringDType()),
    "stringdtype-none": np.array(["a", None, "b"], dtype=StringDType(na_object=None)),
    "stringdtype-nan": np.array(["a", np.nan, "b"], dtype=StringDType(na_object=np.nan)),
    "object-str": np.array(["a", None, "héllo"], dtype=object),
    "object-bytes": np.array([b"a", None, b"\x00"], dtype=object),
    "object-all-none": np.array([None, None], dtype=object),
    "object-str-2d": np.array([["a", None], ["b", "c"]], dtype=object),
}


@pytest.mark.parametrize("array", STRING_ARRAYS.values(), ids=STRING_ARRAYS.keys())
def test_strings_round_trip(array: np.ndarray[Any, Any]) -> None:
    assert_same_array(roundtrip(array), array)


@pytest.mark.parametrize(
    ("array", "arrow_type", "dtype_text"),
    [
        (np.array(["a"], dtype="<U4"), pa.string(), "<U4"),
        (np.array([b"a"], dtype="S4"), pa.binary(), "|S4"),
        (np.array(["a"], dtype=StringDType()), pa.string(), "StringDType()"),
        (
            np.array(["a"], dtype=StringDType(na_object=None)),
            pa.string(),
            "StringDType(na_object=None)",
        ),
        (np.array(["a", None], dtype=object), pa.string(), "|O"),
        (np.array([b"a", None], dtype=object), pa.binary(), "|O"),
    ],
    ids=["U", "S", "T", "T-none", "O-str", "O-bytes"],
)
def test_string_arrow_types(
    array: np.ndarray[Any, Any], arrow_type: pa.DataType, dtype_text: str
) -> None:
    field = schema_of(array).field(0)
    assert field.type == arrow_type
    assert field_meta(field)["tilefn.dtype"] == dtype_text


def test_missing_strings_are_arrow_nulls() -> None:
    _, batches = read_ipc(write_ipc(np.array(["a", None], dtype=object)))
    assert batches[0].column(0).to_pylist() == ["a", None]


BASE = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)


LAYOUTS = {
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "transposed": BASE.T,
    "strided": np.arange(100.0).reshape(10, 10)[::2, ::3],
    "reversed": np.arange(10)[::-1],
    "strided-1d": np.arange(20)[::3],
    "fortran-strings": np.asfortranarray(np.array([["a", "bb"], ["c", "d"]])),
    "strided-complex": (np.arange(12) * 1j).reshape(3, 4)[:, ::2],
}


@pytest.mark.parametrize("array", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_non_contiguous_arrays_round_trip(array: np.ndarray[Any, Any]) -> None:
    assert not array.flags.c_contiguous or array.ndim == 1
    assert_same_array(roundtrip(array), array)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (5, 0), (2, 0, 3), (0, 0), (3, 2, 0)], ids=str)
@pytest.mark.parametrize("dtype", ["float64", "<U3", "complex64", "M8[ns]", "bool"])
def test_zero_size_arrays_round_trip(shape: tuple[int, ...], dtype: str) -> None:
    array = np.zeros(shape, dtype=dtype)
    schema, batches = read_ipc(write_ipc(array))
    assert len(batches) <= 1
    assert sum(batch.num_rows for batch in batches) == shape[0]
    assert_same_array(codec.decode(schema, batches), array)


def test_contiguous_numeric_arrays_are_not_copied() -> None:
    array = np.arange(1000, dtype=np.float64)
    batch = next(codec.encode(array).batches)
    assert batch.column(0).buffers()[1].address == array.ctypes.data


def test_decoded_arrays_are_writable() -> None:
    decoded = roundtrip(np.arange(10.0))
    decoded[0] = 42.0
    assert decoded[0] == 42.0


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_array_subclasses_encode_as_plain_arrays() -> None:
    matrix = np.asmatrix(np.arange(6).reshape(2, 3))
    assert_same_array(roundtrip(matrix), np.arange(6).reshape(2, 3))


# --- scalars --------------------------------------------------------------------------------


NUMPY_SCALARS = [
    np.float32(1.5),
    np.float16(-2.0),
    np.float64(np.nan),
    np.int8(-3),
    np.uint64(2**64 - 1),
    np.bool_(True),
    np.complex64(1 - 2j),
    np.complex128(3 + 4j),
    np.datetime64("2024-05-06T07:08:09.123", "ms"),
    np.datetime64("2024-05-06", "D"),
    np.datetime64("2024-05", "M"),
    np.datetime64("NaT", "ns"),
    np.timedelta64(5, "ms"),
    np.timedelta64(7, "h"),
    np.str_("héllo"),
    np.bytes_(b"\x00ab"),
]


@pytest.mark.parametrize("scalar", NUMPY_SCALARS, ids=lambda s: f"{type(s).__name__}-{s}")
def test_numpy_scalars_round_trip(scalar: np.generic) -> None:
    schema = schema_of(scalar)
    assert schema_meta(schema)["tilefn.kind"] == "scalar"
    assert schema.names == ["value"]
    assert field_meta(schema.field(0))["tilefn.dtype"] == scalar.dtype.str
    decoded = roundtrip(scalar)
    assert type(decoded) is type(scalar)
    assert decoded.dtype == scalar.dtype
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(scalar))


@pytest.mark.parametrize(
    ("value", "arrow_type"),
    [
        (None, pa.null()),
        (True, pa.bool_()),
        (False, pa.bool_()),
        (0, pa.int64()),
        (-(2**63), pa.int64()),
        (2**63 - 1, pa.int64()),
        (2**63, pa.uint64()),
        (2**64 - 1, pa.uint64()),
        (1.5, pa.float64()),
        (float("inf"), pa.float64()),
        ("héllo", pa.string()),
        ("", pa.string()),
        (b"\x00ab", pa.binary()),
    ],
    ids=repr,
)
def test_python_scalars_round_trip(value: object, arrow_type: pa.DataType) -> None:
    schema = schema_of(value)
    assert schema_meta(schema)["tilefn.kind"] == "scalar"
    assert schema.field(0).type == arrow_type
    assert field_meta(schema.field(0)) == {}
    decoded = roundtrip(value)
    assert type(decoded) is type(value)
    assert decoded == value


def test_python_nan_round_trips() -> None:
    decoded = roundtrip(float("nan"))
    assert isinstance(decoded, float)
    assert math.isnan(decoded)


def test_python_complex_becomes_complex128() -> None:
    decoded = roundtrip(1 + 2j)
    assert type(decoded) is np.complex128
    assert decoded == 1 + 2j


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, -(10**40)], ids=repr)
def test_big_ints_fall_back_to_json(value: int) -> None:
    assert schema_meta(schema_of(value))["tilefn.kind"] == "json"
    decoded = roundtrip(value)
    assert type(decoded) is int
    assert decoded == value
