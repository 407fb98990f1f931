"""tilefn.codec, composite values: dicts of arrays, tables, data frames, JSON and IPC bytes.

The helpers are in codec_support.py; the mapping is documented in docs/results.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from tilefn import codec

from codec_support import (
    MiB,
    assert_same_array,
    dict_of_arrays,
    field_meta,
    read_ipc,
    roundtrip,
    sample_frame,
    sample_table,
    schema_meta,
    schema_of,
    write_ipc,
)

# --- dicts of arrays ------------------------------------------------------------------------


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
