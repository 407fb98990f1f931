"""tilefn.codec, errors: what the codec refuses to encode or decode, and what it says.

The helpers are in codec_support.py; the mapping is documented in docs/results.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tilefn import codec

from codec_support import StringDType

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


def test_strings_without_utf8_form_are_a_codec_error() -> None:
    encoded = codec.encode(np.array(["ok", "\ud800"]))
    with pytest.raises(codec.CodecError, match="UTF-8"):
        list(encoded.batches)
