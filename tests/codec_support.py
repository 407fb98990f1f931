"""Shared helpers for the codec tests (test_codec_*.py): IPC round trips and sample values.

Not a test module. Every helper writes and reads a real Arrow IPC stream, as the worker and the
client do (docs/results.md).
"""

from __future__ import annotations

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


def dict_of_arrays() -> dict[str, np.ndarray[Any, Any]]:
    return {
        "z": np.arange(4, dtype=np.int16),
        "grid": np.arange(24, dtype=np.float32).reshape(4, 3, 2),
        "label": np.array(["a", "bb", "", "dddd"]),
        "when": np.array(["2024-01-01", "NaT", "2024-01-03", "2024-01-04"], dtype="M8[D]"),
        "wave": (np.arange(8) * (1 + 1j)).reshape(4, 2),
        "flag": np.array([True, False, True, True]),
    }


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
