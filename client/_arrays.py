"""Array reads as the client describes them: names, ranges, attributes, layout, condition."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tilefn.v1 import array_service_pb2, udf_pb2

LAYOUTS = {
    None: udf_pb2.LAYOUT_UNSPECIFIED,
    "row-major": udf_pb2.LAYOUT_ROW_MAJOR,
    "C": udf_pb2.LAYOUT_ROW_MAJOR,
    "col-major": udf_pb2.LAYOUT_COL_MAJOR,
    "F": udf_pb2.LAYOUT_COL_MAJOR,
    "global-order": udf_pb2.LAYOUT_GLOBAL_ORDER,
    "G": udf_pb2.LAYOUT_GLOBAL_ORDER,
    "unordered": udf_pb2.LAYOUT_UNORDERED,
    "U": udf_pb2.LAYOUT_UNORDERED,
}
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ArrayRead:
    """A slice of a TileDB array for the server to read and hand to a UDF.

    ``ranges`` has one entry per dimension (TileDB Cloud's convention): ``None`` or ``[]`` for
    the whole domain, ``(start, end)`` for one inclusive range, or a list of such pairs. Pass an
    ArrayRead as a UDF argument to receive the data (an ordered dict of numpy arrays) there.
    """

    uri: str
    ranges: Sequence[Any] | None = None
    attrs: Sequence[str] = ()
    layout: str | None = None
    condition: str | None = None
    #: Deliver an iterator of dicts, one per block, so the read need not fit the memory budget.
    batched: bool = False

    def to_proto(self) -> udf_pb2.ArrayInput:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(k for k in LAYOUTS if k)}")
        return udf_pb2.ArrayInput(
            uri=self.uri,
            ranges=[_dimension(r) for r in self.ranges or ()],
            attributes=list(self.attrs),
            layout=LAYOUTS[self.layout],
            condition=self.condition or "",
            batched=self.batched,
        )


def as_read(array: str | ArrayRead) -> ArrayRead:
    return array if isinstance(array, ArrayRead) else ArrayRead(array)


def _dimension(ranges: Any) -> udf_pb2.DimensionRanges:
    if ranges is None or (isinstance(ranges, Sequence) and len(ranges) == 0):
        return udf_pb2.DimensionRanges()
    if isinstance(ranges, tuple) and len(ranges) == 2 and not isinstance(ranges[0], tuple | list):
        ranges = [ranges]
    pairs = [udf_pb2.Range(start=scalar(s), end=scalar(e)) for s, e in ranges]
    return udf_pb2.DimensionRanges(ranges=pairs)


def scalar(value: Any) -> udf_pb2.Scalar:
    """A coordinate as a Scalar message."""
    if isinstance(value, np.datetime64 | datetime.date):
        return udf_pb2.Scalar(datetime_value=str(np.datetime64(value)))
    if isinstance(value, bool):
        raise TypeError("a range bound cannot be a bool")
    if isinstance(value, int | np.integer):
        if int(value) > INT64_MAX:
            return udf_pb2.Scalar(uint64_value=int(value))
        return udf_pb2.Scalar(int64_value=int(value))
    if isinstance(value, float | np.floating):
        return udf_pb2.Scalar(double_value=float(value))
    if isinstance(value, bytes):
        return udf_pb2.Scalar(string_value=value.decode())
    if isinstance(value, str):
        return udf_pb2.Scalar(string_value=value)
    raise TypeError(
        f"a range bound must be a number, string or datetime, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class ArrayInfo:
    """An array the caller may read."""

    uri: str
    namespace: str
    sparse: bool


def schema_dict(schema: array_service_pb2.ArraySchema) -> dict[str, Any]:
    """An ArraySchema message as plain Python data."""
    return {
        "uri": schema.uri,
        "sparse": schema.sparse,
        "cell_order": schema.cell_order,
        "tile_order": schema.tile_order,
        "allows_duplicates": schema.allows_duplicates,
        "dimensions": [
            {
                "name": d.name,
                "type": d.type,
                "var": d.var,
                "domain": (_value(d.domain_start), _value(d.domain_end)) if not d.var else None,
            }
            for d in schema.dimensions
        ],
        "attributes": [
            {"name": a.name, "type": a.type, "nullable": a.nullable, "var": a.var}
            for a in schema.attributes
        ],
    }


def _value(value: udf_pb2.Scalar) -> Any:
    kind = value.WhichOneof("value")
    raw = getattr(value, kind) if kind else None
    return np.datetime64(raw) if kind == "datetime_value" else raw
