"""tilefn.codec: every mapping round-trips through a real Arrow IPC stream (docs/results.md)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tilefn import codec

MiB = 1 << 20
StringDType = np.dtypes.StringDType


def write_ipc(value: object, *, max_batch_bytes: int = MiB, compression: str | None = None) -> Any:
    """Encode ``value`` and write it as one IPC stream, as the worker does."""
    encoded = codec.encode(value, max_batch_bytes=max_batch_bytes)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, encoded.schema, options=options) as writer:
        for batch in encoded.batches:
            writer.write_batch(batch)
    return sink.getvalue()


def read_ipc(data: Any) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    reader = pa.ipc.open_stream(data)
    return reader.schema, list(reader)


def roundtrip(value: object, *, max_batch_bytes: int = MiB) -> Any:
    """encode -> IPC stream -> read back -> decode, as worker and client do."""
    schema, batches = read_ipc(write_ipc(value, max_batch_bytes=max_batch_bytes))
    return codec.decode(schema, batches)


def schema_of(value: object) -> pa.Schema:
    return read_ipc(write_ipc(value))[0]


def field_meta(field: pa.Field) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}


def schema_meta(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def assert_same_array(actual: Any, expected: np.ndarray[Any, Any]) -> None:
    assert type(actual) is np.ndarray
    assert actual.dtype == expected.dtype
    assert repr(actual.dtype) == repr(expected.dtype)  # StringDType's na_object, U itemsize
    assert actual.shape == expected.shape
    if expected.dtype.kind == "T":  # assert_array_equal cannot compare nan-like missing values
        assert [repr(x) for x in actual.flat] == [repr(x) for x in expected.flat]
    else:
        np.testing.assert_array_equal(actual, expected)


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


# --- dicts of arrays ------------------------------------------------------------------------


def dict_of_arrays() -> dict[str, np.ndarray[Any, Any]]:
    return {
        "z": np.arange(4, dtype=np.int16),
        "grid": np.arange(24, dtype=np.float32).reshape(4, 3, 2),
        "label": np.array(["a", "bb", "", "dddd"]),
        "when": np.array(["2024-01-01", "NaT", "2024-01-03", "2024-01-04"], dtype="M8[D]"),
        "wave": (np.arange(8) * (1 + 1j)).reshape(4, 2),
        "flag": np.array([True, False, True, True]),
    }


@pytest.mark.parametrize("max_batch_bytes", [MiB, 20], ids=["one-batch", "many-batches"])
def test_dict_of_arrays_round_trips_in_key_order(max_batch_bytes: int) -> None:
    value = dict_of_arrays()
    decoded = roundtrip(value, max_batch_bytes=max_batch_bytes)
    assert type(decoded) is dict
    assert list(decoded) == list(value)
    for key, array in value.items():
        assert_same_array(decoded[key], array)


def test_dict_of_arrays_layout() -> None:
    schema = schema_of(dict_of_arrays())
    assert schema_meta(schema) == {"tilefn.kind": "dict", "tilefn.stream": "false"}
    assert schema.names == list(dict_of_arrays())
    grid = schema.field("grid")
    assert grid.type == pa.list_(pa.float32(), 6)
    assert field_meta(grid) == {"tilefn.dtype": "<f4", "tilefn.item_shape": "[3, 2]"}


def test_dict_of_zero_length_arrays_round_trips() -> None:
    value = {"a": np.zeros((0, 2)), "b": np.array([], dtype="<U2")}
    decoded = roundtrip(value)
    for key, array in value.items():
        assert_same_array(decoded[key], array)


# --- tables and data frames -----------------------------------------------------------------


def sample_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(6), pa.int32()),
            "name": ["a", None, "c", "d", "e", "f"],
            "tags": [[1, 2], [], None, [3], [4, 5, 6], [7]],
            "point": [{"x": i, "y": -i} for i in range(6)],
            "kind": pa.array(["u", "v", "u", "w", "v", "u"]).dictionary_encode(),
        },
        metadata={"owner": "me", "note": "ü"},
    )


@pytest.mark.parametrize("max_batch_bytes", [MiB, 30], ids=["one-batch", "many-batches"])
def test_table_round_trips_with_its_metadata(max_batch_bytes: int) -> None:
    table = sample_table()
    schema, batches = read_ipc(write_ipc(table, max_batch_bytes=max_batch_bytes))
    assert schema_meta(schema) == {
        "owner": "me",
        "note": "ü",
        "tilefn.kind": "table",
        "tilefn.stream": "false",
    }
    assert (len(batches) > 1) == (max_batch_bytes < MiB)
    decoded = codec.decode(schema, batches)
    assert isinstance(decoded, pa.Table)
    assert decoded.equals(table, check_metadata=True)


def test_table_without_metadata_decodes_without_metadata() -> None:
    table = pa.table({"a": [1, 2]})
    decoded = roundtrip(table)
    assert decoded.schema.metadata is None
    assert decoded.equals(table)


def test_empty_table_round_trips() -> None:
    table = pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.string())})
    assert roundtrip(table).equals(table, check_metadata=True)


@pytest.mark.parametrize("max_batch_bytes", [MiB, 30], ids=["one-batch", "many-batches"])
def test_record_batch_round_trips_with_its_metadata(max_batch_bytes: int) -> None:
    batch = sample_table().combine_chunks().to_batches()[0]
    assert batch.schema.metadata
    decoded = roundtrip(batch, max_batch_bytes=max_batch_bytes)
    assert isinstance(decoded, pa.RecordBatch)
    assert decoded.equals(batch, check_metadata=True)


def test_empty_record_batch_round_trips() -> None:
    batch = pa.record_batch({"a": pa.array([], pa.float32())})
    decoded = roundtrip(batch)
    assert isinstance(decoded, pa.RecordBatch)
    assert decoded.equals(batch)


def sample_frame() -> Any:
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, np.nan, 2.5],
            "s": ["a", "b", None],
            "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
            "utc": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).tz_localize("UTC"),
        }
    )


def test_dataframe_round_trips_with_categoricals_and_datetimes() -> None:
    pd = pytest.importorskip("pandas")
    frame = sample_frame()
    schema = schema_of(frame)
    assert schema_meta(schema)["tilefn.kind"] == "dataframe"
    assert b"pandas" in schema.metadata
    assert pa.types.is_dictionary(schema.field("cat").type)
    decoded = roundtrip(frame)
    pd.testing.assert_frame_equal(decoded, frame)
    assert isinstance(decoded["cat"].dtype, pd.CategoricalDtype)


def test_dataframe_with_named_index_round_trips() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index(["r1", "r2"], name="row"))
    pd.testing.assert_frame_equal(roundtrip(frame), frame)


def test_unconvertible_dataframe_is_unsupported() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"mixed": [1, "a", object()]})
    with pytest.raises(codec.UnsupportedTypeError, match="DataFrame"):
        codec.encode(frame)


# --- JSON -----------------------------------------------------------------------------------

JSON_VALUES = [
    [],
    {},
    [1, 2.5, "x", None, True],
    {"a": [1, {"b": [None, "c"]}], "d": {}},
    [[[]]],
    {"big": 2**100, "neg": -1},
    {"name": "ü", "values": [1, 2, 3]},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_json_values_round_trip(value: object) -> None:
    schema, batches = read_ipc(write_ipc(value))
    assert schema_meta(schema) == {"tilefn.kind": "json", "tilefn.stream": "false"}
    assert schema.field(0).type == pa.string()
    assert json.loads(batches[0].column(0)[0].as_py()) == value
    assert codec.decode(schema, batches) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((1, 2), [1, 2]),
        ([(1, (2, 3)), {"t": ()}], [[1, [2, 3]], {"t": []}]),
        ((), []),
    ],
    ids=repr,
)
def test_tuples_decode_as_lists(value: object, expected: object) -> None:
    decoded = roundtrip(value)
    assert decoded == expected
    assert type(decoded) is list


def test_dict_with_some_array_values_is_not_a_dict_of_arrays() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match=r"\['a'\] has type 'numpy.ndarray'"):
        codec.encode({"a": np.arange(3), "b": 1})


def test_numpy_float_members_are_json_floats() -> None:
    assert roundtrip([np.float64(1.5)]) == [1.5]


# --- streams --------------------------------------------------------------------------------


def arrays(*lengths: int, item_shape: tuple[int, ...] = (), dtype: str = "float64") -> Any:
    start = 0
    for length in lengths:
        size = length * math.prod(item_shape)
        yield np.arange(start, start + size).astype(dtype).reshape((length, *item_shape))
        start += size


@pytest.mark.parametrize("item_shape", [(), (3,), (2, 3)], ids=str)
@pytest.mark.parametrize("dtype", ["float64", "int8", "complex64", "<U4", "M8[ms]", "M8[M]"])
def test_array_stream_concatenates_along_axis_0(item_shape: tuple[int, ...], dtype: str) -> None:
    expected = np.concatenate(list(arrays(2, 0, 3, 1, item_shape=item_shape, dtype=dtype)))
    decoded = roundtrip(arrays(2, 0, 3, 1, item_shape=item_shape, dtype=dtype))
    assert_same_array(decoded, expected)


def test_array_stream_metadata() -> None:
    schema = schema_of(arrays(2, 3, item_shape=(4,)))
    assert schema_meta(schema) == {"tilefn.kind": "ndarray", "tilefn.stream": "true"}
    assert field_meta(schema.field(0)) == {"tilefn.dtype": "<f8", "tilefn.item_shape": "[4]"}


def test_any_iterator_streams_but_a_list_does_not() -> None:
    assert_same_array(roundtrip(iter([np.arange(2), np.arange(3)])), np.array([0, 1, 0, 1, 2]))
    assert_same_array(roundtrip(map(np.arange, [1, 2])), np.array([0, 0, 1]))
    assert schema_meta(schema_of([1, 2]))["tilefn.kind"] == "json"


def test_dict_stream_concatenates_each_key() -> None:
    items = [dict_of_arrays(), dict_of_arrays()]
    decoded = roundtrip(iter(items))
    assert list(decoded) == list(items[0])
    for key in items[0]:
        assert_same_array(decoded[key], np.concatenate([items[0][key], items[1][key]]))


@pytest.mark.parametrize("make", [pa.table, pa.record_batch], ids=["table", "record_batch"])
def test_table_and_record_batch_streams_decode_to_one_table(make: Any) -> None:
    parts = [make({"a": [1, 2], "b": ["x", "y"]}), make({"a": [3], "b": pa.array([None], "str")})]
    decoded = roundtrip(iter(parts))
    assert isinstance(decoded, pa.Table)
    assert decoded.to_pydict() == {"a": [1, 2, 3], "b": ["x", "y", None]}


def test_table_stream_items_may_differ_in_metadata() -> None:
    parts = [pa.table({"a": [1]}, metadata={"i": "0"}), pa.table({"a": [2]}, metadata={"i": "1"})]
    decoded = roundtrip(iter(parts))
    assert decoded.column("a").to_pylist() == [1, 2]
    assert decoded.schema.metadata == {b"i": b"0"}


def test_dataframe_stream_decodes_to_one_frame() -> None:
    pd = pytest.importorskip("pandas")
    frames = [sample_frame(), sample_frame().iloc[:2], sample_frame().iloc[1:]]
    decoded = roundtrip(iter(frames))
    expected = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(decoded, expected)


def test_python_scalar_stream_decodes_to_a_list() -> None:
    assert roundtrip(iter([1, 2, 3])) == [1, 2, 3]
    assert roundtrip(x for x in ["a", "b"]) == ["a", "b"]


def test_numpy_scalar_stream_decodes_to_numpy_scalars() -> None:
    decoded = roundtrip(np.float32(x) for x in range(3))
    assert decoded == [0.0, 1.0, 2.0]
    assert all(type(x) is np.float32 for x in decoded)


def test_json_stream_decodes_to_a_list_of_values() -> None:
    items = [[1, 2], {"a": None}, (3,), 2**70]
    assert roundtrip(iter(items)) == [[1, 2], {"a": None}, [3], 2**70]


def test_empty_generator() -> None:
    schema, batches = read_ipc(write_ipc(x for x in ()))
    assert schema_meta(schema) == {"tilefn.kind": "empty", "tilefn.stream": "true"}
    assert len(schema) == 0
    assert batches == []
    assert codec.decode(schema, batches) == []


def test_decode_accepts_batches_straight_from_encode() -> None:
    encoded = codec.encode(arrays(3, 4, item_shape=(2,)), max_batch_bytes=16)
    decoded = codec.decode(encoded.schema, encoded.batches)
    assert_same_array(decoded, np.arange(14.0).reshape(7, 2))


# --- batch size and laziness ----------------------------------------------------------------


def test_large_array_is_sliced_into_bounded_batches() -> None:
    array = np.arange(10 * MiB // 8, dtype=np.float64)
    schema, batches = read_ipc(write_ipc(array, max_batch_bytes=MiB))
    assert len(batches) > 1
    assert all(batch.nbytes <= MiB for batch in batches)
    assert_same_array(codec.decode(schema, batches), array)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(300_000, dtype=np.int32).reshape(1000, 300),
        np.array([f"item {i}" for i in range(50_000)]),
        np.array([f"item {i}" for i in range(50_000)], dtype=object),
        pa.table({"a": np.arange(200_000), "b": np.arange(200_000) * 0.5}),
        {"a": np.arange(100_000), "b": np.ones((100_000, 4), np.float32)},
    ],
    ids=["2d", "unicode", "object-str", "table", "dict"],
)
def test_batches_stay_near_the_byte_bound(value: object) -> None:
    max_batch_bytes = 64 * 1024
    batches = list(codec.encode(value, max_batch_bytes=max_batch_bytes).batches)
    assert len(batches) > 1
    assert all(batch.nbytes <= 1.25 * max_batch_bytes for batch in batches)


def test_a_row_larger_than_the_bound_is_one_batch() -> None:
    batches = list(codec.encode(np.zeros((3, 1000)), max_batch_bytes=100).batches)
    assert [batch.num_rows for batch in batches] == [1, 1, 1]


def test_max_batch_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        codec.encode(np.arange(3), max_batch_bytes=0)


def test_stream_items_are_pulled_only_as_batches_are_consumed() -> None:
    pulled: list[int] = []

    def results() -> Iterator[np.ndarray[Any, Any]]:
        for i in range(3):
            pulled.append(i)
            if i == 2:
                raise RuntimeError("third item failed")
            yield np.full((4, 2), i, dtype=np.int64)

    encoded = codec.encode(results(), max_batch_bytes=16)
    assert pulled == [0]
    first = next(encoded.batches)
    assert pulled == [0]
    received = [first]
    with pytest.raises(RuntimeError, match="third item failed"):
        for batch in encoded.batches:
            received.append(batch)
    assert pulled == [0, 1, 2]
    assert sum(batch.num_rows for batch in received) == 8
    assert all(batch.num_rows == 1 for batch in received)


def test_a_stream_stopped_early_closes_its_generator() -> None:
    closed: list[bool] = []

    def results() -> Iterator[np.ndarray[Any, Any]]:
        try:
            yield np.zeros(2)
            yield np.zeros(2, dtype=np.int8)
            yield np.zeros(2)
        finally:
            closed.append(True)

    encoded = codec.encode(results())
    with pytest.raises(codec.SchemaMismatchError):
        list(encoded.batches)
    assert closed == [True]


def test_a_generator_failing_on_its_first_item_fails_encode() -> None:
    def results() -> Iterator[int]:
        raise KeyError("boom")
        yield 1

    with pytest.raises(KeyError, match="boom"):
        codec.encode(results())


# --- IPC helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_to_ipc_compression(compression: str) -> None:
    array = np.zeros((1000, 100))
    data = codec.to_ipc(array, compression=compression)
    assert len(data) < len(codec.to_ipc(array)) // 10
    assert_same_array(codec.from_ipc(data), array)


@pytest.mark.parametrize(
    "value",
    [np.arange(6).reshape(2, 3), {"a": np.arange(2)}, [1, "x"], None, sample_table()],
    ids=["ndarray", "dict", "json", "none", "table"],
)
def test_to_ipc_is_a_plain_arrow_stream(value: object) -> None:
    data = codec.to_ipc(value)
    assert isinstance(data, bytes)
    table = pa.ipc.open_stream(data).read_all()
    assert table.schema.metadata[b"tilefn.kind"]
    decoded = codec.from_ipc(memoryview(data))
    assert type(decoded) is type(roundtrip(value))


def test_from_ipc_of_a_foreign_stream_is_a_table() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]}, metadata={"origin": "node"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    decoded = codec.from_ipc(sink.getvalue().to_pybytes())
    assert isinstance(decoded, pa.Table)
    assert decoded.equals(table, check_metadata=True)


def test_foreign_ndarray_without_dtype_metadata_follows_the_arrow_type() -> None:
    values = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4, 5, 6], pa.int32()), 3)
    schema = pa.schema([pa.field("values", values.type)], metadata={"tilefn.kind": "ndarray"})
    decoded = codec.decode(schema, [pa.record_batch([values], schema=schema)])
    assert_same_array(decoded, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32))


def test_from_ipc_rejects_garbage() -> None:
    with pytest.raises(codec.CodecError, match="not a valid Arrow IPC stream"):
        codec.from_ipc(b"definitely not arrow")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"tilefn.kind": "hologram"}, "unknown tilefn.kind 'hologram'"),
        ({"tilefn.kind": "scalar"}, "needs one column"),
    ],
)
def test_decode_rejects_bad_metadata(metadata: dict[str, str], message: str) -> None:
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())], metadata=metadata)
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(schema, [])


@pytest.mark.parametrize(
    ("field_metadata", "message"),
    [
        ({"tilefn.dtype": "not a dtype"}, "invalid tilefn.dtype"),
        ({"tilefn.dtype": "<f8", "tilefn.item_shape": "[-1]"}, "invalid tilefn.item_shape"),
        ({"tilefn.dtype": "<f8", "tilefn.shape": "[7]"}, "cannot take shape"),
    ],
)
def test_decode_rejects_bad_field_metadata(field_metadata: dict[str, str], message: str) -> None:
    field = pa.field("values", pa.float64(), metadata=field_metadata)
    schema = pa.schema([field], metadata={"tilefn.kind": "ndarray"})
    batch = pa.record_batch([pa.array([1.0, 2.0])], schema=schema)
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(schema, [batch])


# --- errors ---------------------------------------------------------------------------------


class Point:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (object(), "object"),
        (lambda x: x, "function"),
        (Point(), r"[\w.]*Point"),
        (range(3), "range"),
        (bytearray(b"x"), "bytearray"),
    ],
    ids=["set", "frozenset", "object", "lambda", "custom", "range", "bytearray"],
)
def test_unsupported_values_name_their_type(value: object, type_name: str) -> None:
    pattern = f"^cannot convert a value of type '{type_name}' to Arrow; supported: numpy arrays"
    with pytest.raises(codec.UnsupportedTypeError, match=pattern):
        codec.encode(value)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([1, "a", None], dtype=object), "object array holding 'int' items"),
        (np.array([Point()], dtype=object), r"holding '[\w.]*Point' items"),
        (np.array(["a", b"b"], dtype=object), "both 'str' and 'bytes'"),
        (np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), "structured"),
        (np.zeros(3, dtype="V8"), "dtype"),
        (np.array(["a"], dtype=StringDType(na_object="")), "na_object"),
    ],
    ids=["object-mixed", "object-custom", "str-and-bytes", "structured", "void", "string-na"],
)
def test_unsupported_element_types(array: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(codec.UnsupportedTypeError, match=message):
        codec.encode(array)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_long_double_is_unsupported() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match="dtype"):
        codec.encode(np.zeros(2, dtype=np.longdouble))


def test_masked_arrays_are_unsupported() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match="MaskedArray"):
        codec.encode(np.ma.masked_array([1, 2], mask=[True, False]))


def test_dict_of_arrays_with_unequal_lengths() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match=r"unequal lengths \('a': 3, 'b': 4\)"):
        codec.encode({"a": np.arange(3), "b": np.arange(4)})


def test_dict_of_arrays_with_a_0d_value() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match="'b' is a 0-d array"):
        codec.encode({"a": np.arange(3), "b": np.array(1.0)})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1.0, float("nan")], r"member \[1\] is nan"),
        ({"a": [1, {"b": float("inf")}]}, r"member \['a'\]\[1\]\['b'\] is inf"),
        ([1, np.arange(3)], r"member \[1\] has type 'numpy.ndarray'"),
        ([{1, 2}], r"member \[0\] has type 'set'"),
        ({"a": np.int64(1)}, r"member \['a'\] has type 'numpy.int64'"),
        ({1: "a"}, "key 1 of type 'int'"),
        ((object(),), r"member \[0\] has type 'object'"),
    ],
    ids=["nan", "nested-inf", "ndarray", "set", "numpy-int", "int-key", "tuple-object"],
)
def test_values_json_cannot_hold(value: object, message: str) -> None:
    with pytest.raises(codec.UnsupportedTypeError, match=message):
        codec.encode(value)


def test_self_containing_list_is_unsupported() -> None:
    value: list[object] = [1]
    value.append(value)
    with pytest.raises(codec.UnsupportedTypeError, match="contains itself"):
        codec.encode(value)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([np.zeros(2), np.zeros(2, np.float32)], "dtype float32"),
        ([np.zeros((2, 3)), np.zeros((2, 4))], "shape[1:] [4]"),
        ([np.zeros(2), np.zeros((2, 1))], "fixed_size_list"),
        ([np.array(["ab"]), np.array(["abc"])], "<U3"),
        ([np.zeros(2), pa.table({"a": [1]})], "item 1 is table"),
        ([1, 2.5], "value: double"),
        ([{"a": np.zeros(1)}, {"b": np.zeros(1)}], "b: double"),
        ([pa.table({"a": [1]}), pa.table({"a": ["x"]})], "a: string"),
        ([1, 2**80], "item 1 is json"),
    ],
    ids=[
        "dtype",
        "trailing-shape",
        "ndim",
        "itemsize",
        "kind",
        "scalar-type",
        "dict-keys",
        "table-types",
        "big-int",
    ],
)
def test_stream_schema_mismatch(items: list[object], message: str) -> None:
    encoded = codec.encode(iter(items))
    first = next(encoded.batches)
    assert first.num_rows >= 1
    with pytest.raises(codec.SchemaMismatchError, match="stream item 1 does not match item 0") as e:
        next(encoded.batches)
    assert message in str(e.value)


def test_0d_arrays_in_a_stream() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match="stream item 0 is a 0-d array"):
        codec.encode(iter([np.array(1.0)]))
    encoded = codec.encode(iter([np.zeros(1), np.array(1.0)]))
    next(encoded.batches)
    with pytest.raises(codec.UnsupportedTypeError, match="stream item 1 is a 0-d array"):
        next(encoded.batches)


def test_nested_iterators_in_a_stream() -> None:
    with pytest.raises(codec.UnsupportedTypeError, match="stream item 0 is itself an iterator"):
        codec.encode(iter([iter([1])]))


def test_error_tree() -> None:
    assert issubclass(codec.CodecError, ValueError)
    assert issubclass(codec.UnsupportedTypeError, codec.CodecError)
    assert issubclass(codec.SchemaMismatchError, codec.CodecError)


NO_PANDAS_SCRIPT = """
import sys
import numpy as np
import pyarrow as pa
from tilefn import codec

batch = pa.RecordBatch.from_arrays([pa.nulls(2, pa.int64())], names=["a"])  # not pa.array
assert "pandas" not in sys.modules
values = [
    np.arange(12.0).reshape(3, 4), np.array([True, False]), np.array([1 + 2j]),
    np.array(["a", "b"]), np.array([b"a"]), np.array(["a", None], dtype=object),
    np.array(["a"], dtype=np.dtypes.StringDType()), np.array(["2024-01-01", "NaT"], "M8[D]"),
    np.array([1, "NaT"], "m8[ns]"), np.array([1], "M8[M]"), np.float32(1.5), 3, 2.5, "s", b"b",
    None, True, 2**70, [1, {"a": (2,)}], {"a": np.arange(3)}, pa.Table.from_batches([batch]),
    batch, iter([np.arange(2), np.arange(3)]), iter([1, 2]), iter(()),
]
for value in values:
    codec.from_ipc(codec.to_ipc(value))
assert "pandas" not in sys.modules, "pandas was imported"
"""


def test_the_codec_never_imports_pandas_for_values_without_pandas() -> None:
    """pyarrow's pa.array and to_numpy import pandas; a fresh worker must not pay for it."""
    subprocess.run([sys.executable, "-c", NO_PANDAS_SCRIPT], check=True)


def test_strings_without_utf8_form_are_a_codec_error() -> None:
    encoded = codec.encode(np.array(["ok", "\ud800"]))
    with pytest.raises(codec.CodecError, match="UTF-8"):
        list(encoded.batches)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_documented_foreign_reader_recipe(stream: bool) -> None:
    """docs/results.md shows how to read an ndarray with pyarrow and numpy only; keep it true."""
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    value = iter([array[:1], array[1:]]) if stream else array
    table = pa.ipc.open_stream(codec.to_ipc(value)).read_all()
    field = table.schema.field("values")
    column = table.column("values").combine_chunks()
    flat = column.flatten() if pa.types.is_fixed_size_list(field.type) else column
    if stream:
        shape = [table.num_rows, *json.loads(field.metadata[b"tilefn.item_shape"])]
    else:
        shape = json.loads(field.metadata[b"tilefn.shape"])
    np.testing.assert_array_equal(flat.to_numpy(zero_copy_only=False).reshape(shape), array)
