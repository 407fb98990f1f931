"""tilefn.codec, streams: iterators of results, batch sizes and lazy encoding.

The helpers are in codec_support.py; the mapping is documented in docs/results.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

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
    schema_meta,
    schema_of,
    write_ipc,
)

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
