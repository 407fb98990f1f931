"""The metadata keys and values that make up the wire contract (docs/results.md).

Foreign clients read these keys; renaming one or changing a value's meaning breaks them.
"""

from __future__ import annotations

import enum

import pyarrow as pa


class Kind(enum.StrEnum):
    """Values of the ``tilefn.kind`` schema metadata key: what Python value was encoded."""

    NDARRAY = "ndarray"
    DICT = "dict"
    TABLE = "table"
    RECORD_BATCH = "record_batch"
    DATAFRAME = "dataframe"
    SCALAR = "scalar"
    JSON = "json"
    EMPTY = "empty"


#: Schema metadata: the ``Kind`` of the encoded value.
KIND = "tilefn.kind"
#: Schema metadata: ``"true"`` when the value was an iterator whose items were concatenated,
#: ``"false"`` otherwise.
STREAM = "tilefn.stream"
#: Field metadata: the numpy dtype of an array column (``dtype.str``, or ``StringDType(...)``).
DTYPE = "tilefn.dtype"
#: Field metadata: the JSON shape of a whole (non-streamed) ndarray.
SHAPE = "tilefn.shape"
#: Field metadata: the JSON shape of one row of an array column (the array's ``shape[1:]``).
ITEM_SHAPE = "tilefn.item_shape"

#: The schema-level keys the codec adds; decode strips them from tables it hands back.
SCHEMA_KEYS = (KIND, STREAM)

#: Column names for the single-column kinds.
VALUES_COLUMN = "values"
VALUE_COLUMN = "value"
JSON_COLUMN = "json"


def read_key(owner: pa.Field | pa.Schema, key: str) -> str | None:
    """The value of one metadata key of a field or schema, or None when it is absent."""
    metadata: dict[bytes, bytes] | None = owner.metadata
    if not metadata:
        return None
    value = metadata.get(key.encode())
    return None if value is None else value.decode("utf-8", errors="replace")
