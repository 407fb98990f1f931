"""Turn an ArrayInput's ranges, attributes and layout into a checked read plan for one array.

Ranges follow TileDB Cloud: one entry per dimension, each a list of inclusive [start, end] pairs,
an empty list (or a missing entry) meaning the dimension's whole domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tiledb

from tilefn.v1 import udf_pb2

from ._arrays import ArrayRef
from ._status import R, ServiceError

ORDERS = {
    udf_pb2.LAYOUT_UNSPECIFIED: "",
    udf_pb2.LAYOUT_ROW_MAJOR: "C",
    udf_pb2.LAYOUT_COL_MAJOR: "F",
    udf_pb2.LAYOUT_GLOBAL_ORDER: "G",
    udf_pb2.LAYOUT_UNORDERED: "U",
}

Pair = tuple[Any, Any]


@dataclass(frozen=True)
class ReadPlan:
    """A validated read: per-dimension ranges (None = whole domain) and what to return."""

    ref: ArrayRef
    ranges: tuple[tuple[Pair, ...] | None, ...]
    attrs: tuple[str, ...]
    dims: tuple[str, ...]
    order: str
    condition: str | None


def plan_read(ref: ArrayRef, schema: tiledb.ArraySchema, spec: udf_pb2.ArrayInput) -> ReadPlan:
    """Check an ArrayInput against the array's schema."""
    domain = schema.domain
    if len(spec.ranges) > domain.ndim:
        raise _range_error(ref, "", f"{len(spec.ranges)} range lists for {domain.ndim} dimensions")
    ranges = tuple(
        _dimension_ranges(ref, domain.dim(i), spec.ranges[i].ranges if i < len(spec.ranges) else [])
        for i in range(domain.ndim)
    )
    attrs, dims = _selection(ref, schema, list(spec.attributes))
    if spec.layout not in ORDERS:
        raise ServiceError(
            R.ERROR_REASON_OPTION_INVALID, f"unknown layout {spec.layout}", option="layout"
        )
    default = "U" if schema.sparse else "C"
    if not schema.sparse and ORDERS[spec.layout] == "U":
        raise ServiceError(
            R.ERROR_REASON_OPTION_INVALID,
            f"{ref.name} is dense; the unordered layout is for sparse arrays",
            option="layout",
        )
    return ReadPlan(
        ref=ref,
        ranges=ranges,
        attrs=attrs,
        dims=dims,
        order=ORDERS[spec.layout] or default,
        condition=spec.condition.strip() or None,
    )


def _selection(
    ref: ArrayRef, schema: tiledb.ArraySchema, wanted: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    attr_names = [schema.attr(i).name for i in range(schema.nattr)]
    dim_names = [schema.domain.dim(i).name for i in range(schema.domain.ndim)]
    if not wanted:
        # Dense reads return N-d arrays whose coordinates follow from the ranges; sparse reads
        # need the coordinates to mean anything.
        return tuple(attr_names), tuple(dim_names) if schema.sparse else ()
    for name in wanted:
        if name not in attr_names and name not in dim_names:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_ATTRIBUTE_UNKNOWN,
                f"{ref.name} has no attribute or dimension named {name[:100]!r}",
                array=ref.name,
                attribute=name[:100],
            )
    return tuple(n for n in wanted if n in attr_names), tuple(n for n in wanted if n in dim_names)


def _dimension_ranges(ref: ArrayRef, dim: tiledb.Dim, ranges: Any) -> tuple[Pair, ...] | None:
    if not ranges:
        return None
    pairs = []
    for r in ranges:
        start, end = _coordinate(ref, dim, r.start), _coordinate(ref, dim, r.end)
        if start > end:
            raise _range_error(ref, dim.name, f"range [{start}, {end}] is reversed")
        if not (dim.isvar or dim.dtype.kind in "SU"):
            low, high = dim.domain
            if start < low or end > high:
                raise _range_error(
                    ref, dim.name, f"range [{start}, {end}] is outside the domain [{low}, {high}]"
                )
        pairs.append((start, end))
    return tuple(pairs)


#: Which Scalar fields each kind of dimension accepts.
ACCEPTED = {
    "string": ("string_value",),
    "M": ("datetime_value", "int64_value"),
    "i": ("int64_value", "uint64_value"),
    "u": ("int64_value", "uint64_value"),
    "f": ("double_value", "int64_value", "uint64_value"),
}


def _coordinate(ref: ArrayRef, dim: tiledb.Dim, scalar: udf_pb2.Scalar) -> Any:
    kind = scalar.WhichOneof("value")
    family = "string" if dim.isvar or dim.dtype.kind in "SU" else dim.dtype.kind
    if kind not in ACCEPTED.get(family, ()):
        expected = "a string" if family == "string" else f"a {dim.dtype} value"
        got = (kind or "no value").removesuffix("_value")
        raise _range_error(ref, dim.name, f"expects {expected}; got {got}")
    value = getattr(scalar, kind)
    if family == "string":
        return value
    if family == "f" and math.isnan(value):
        raise _range_error(ref, dim.name, "a range bound cannot be NaN")
    try:
        if family == "M":
            return np.array(value, dtype=dim.dtype)[()]
        return dim.dtype.type(value)
    except (ValueError, OverflowError) as exc:
        raise _range_error(ref, dim.name, f"bad coordinate {value!r}: {exc}") from None


def _range_error(ref: ArrayRef, dimension: str, message: str) -> ServiceError:
    where = f"dimension {dimension!r} of {ref.name}" if dimension else ref.name
    return ServiceError(
        R.ERROR_REASON_ARRAY_RANGE_INVALID,
        f"{where}: {message}",
        array=ref.name,
        dimension=dimension,
    )
