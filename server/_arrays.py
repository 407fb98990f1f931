"""The array catalog: client array names -> storage URIs under the data root, listings, schemas.

Clients name arrays ``tiledb://<namespace>/<name>``; the server maps that to
``<data root>/<namespace>/<name>``. Raw storage URIs are refused unless the operator allows them,
and even then a local path must stay inside the data root. Nothing here ever puts a server path in
an error message: errors name the array as the client wrote it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tiledb

from tilefn.v1 import array_service_pb2 as apb
from tilefn.v1 import udf_pb2

from ._status import R, ServiceError

SCHEME = "tiledb://"
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
LOCAL_SCHEMES = ("file://",)
#: Storage schemes TileDB reads; any other raw URI is refused before TileDB sees it.
KNOWN_SCHEMES = ("file", "s3", "gcs", "gs", "azure", "hdfs", "mem")


@dataclass(frozen=True)
class ArrayRef:
    """A resolved array: the name the client used, its namespace, where it is stored."""

    name: str
    namespace: str
    storage_uri: str
    #: Its name inside the namespace; empty for a raw storage URI (which has no namespace).
    array: str = ""


class ArrayCatalog:
    """Resolves, lists and describes arrays under one data root."""

    def __init__(self, data_root: str, *, allow_raw_uris: bool, ctx: tiledb.Ctx) -> None:
        self.ctx = ctx
        self.allow_raw_uris = allow_raw_uris
        self._remote = "://" in data_root and not data_root.startswith(LOCAL_SCHEMES)
        if self._remote:
            self.root = data_root.rstrip("/")
        else:
            self.root = str(Path(data_root.removeprefix("file://")).resolve())

    def resolve(self, uri: str) -> ArrayRef:
        """Map a client's array name (or, if allowed, raw URI) to storage; no existence check."""
        if uri.startswith(SCHEME):
            namespace, name = _split_name(uri)
            return ArrayRef(uri, namespace, self._inside_root(uri, f"{namespace}/{name}"), name)
        if not uri:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_NAME_INVALID, "the array name is empty", array=""
            )
        if not self.allow_raw_uris:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_URI_REFUSED,
                f"raw storage URIs are disabled on this server; name arrays {SCHEME}namespace/name",
                array=uri[:200],
            )
        return ArrayRef(uri, "", self._raw(uri))

    def open(self, ref: ArrayRef) -> tiledb.Array:
        """Open an array for reading (blocking); NOT_FOUND if there is none."""
        if tiledb.object_type(ref.storage_uri, ctx=self.ctx) != "array":
            raise ServiceError(
                R.ERROR_REASON_ARRAY_NOT_FOUND, f"no array named {ref.name}", array=ref.name
            )
        return tiledb.open(ref.storage_uri, mode="r", ctx=self.ctx)

    def list(self, namespace: str = "") -> list[apb.ArrayInfo]:
        """Every array under the root (blocking), ordered by name."""
        if namespace and not SEGMENT.match(namespace):
            return []
        vfs = tiledb.VFS(ctx=self.ctx)
        found = []
        spaces = [namespace] if namespace else [_last(p) for p in _ls_dirs(vfs, self.root)]
        for space in filter(SEGMENT.match, spaces):
            for uri in _ls_dirs(vfs, f"{self.root}/{space}"):
                name = _last(uri)
                if not SEGMENT.match(name) or not self._listable(f"{space}/{name}"):
                    continue
                if tiledb.object_type(uri, ctx=self.ctx) == "array":
                    sparse = tiledb.ArraySchema.load(uri, ctx=self.ctx).sparse
                    found.append(
                        apb.ArrayInfo(uri=f"{SCHEME}{space}/{name}", namespace=space, sparse=sparse)
                    )
        return sorted(found, key=lambda info: info.uri)

    def _listable(self, relative: str) -> bool:
        """False for entries that resolve outside the root (symlinks), which are never served."""
        try:
            self._inside_root("", relative)
        except ServiceError:
            return False
        return True

    def _inside_root(self, shown: str, relative: str) -> str:
        if self._remote:
            return f"{self.root}/{relative}"
        path = os.path.realpath(os.path.join(self.root, relative))
        if os.path.commonpath([path, self.root]) != self.root:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_URI_REFUSED, f"{shown} leaves the data root", array=shown[:200]
            )
        return path

    def _raw(self, uri: str) -> str:
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        if scheme and scheme not in KNOWN_SCHEMES:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_NAME_INVALID,
                f"unsupported storage scheme {scheme[:20]!r}; "
                f"use one of {', '.join(KNOWN_SCHEMES)}",
                array=uri[:200],
            )
        if ".." in uri.replace("\\", "/").split("/"):
            raise ServiceError(
                R.ERROR_REASON_ARRAY_URI_REFUSED, "array URIs may not contain '..'", array=uri[:200]
            )
        local = uri.startswith(LOCAL_SCHEMES) or "://" not in uri
        if not local:
            return uri
        if self._remote:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_URI_REFUSED, "local paths are refused", array=uri[:200]
            )
        path = os.path.realpath(uri.removeprefix("file://"))
        if os.path.commonpath([path, self.root]) != self.root:
            raise ServiceError(
                R.ERROR_REASON_ARRAY_URI_REFUSED,
                f"{uri[:200]} is outside the data root",
                array=uri[:200],
            )
        return path


def _split_name(uri: str) -> tuple[str, str]:
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) != 2 or not all(SEGMENT.match(p) for p in parts) or ".." in parts:
        raise ServiceError(
            R.ERROR_REASON_ARRAY_NAME_INVALID,
            f"{uri[:200]!r} is not a valid array name; use {SCHEME}namespace/name with letters, "
            "digits, '_', '-' and '.'",
            array=uri[:200],
        )
    return parts[0], parts[1]


def _ls_dirs(vfs: tiledb.VFS, uri: str) -> list[str]:
    try:
        return [p.rstrip("/") for p in vfs.ls(uri) if vfs.is_dir(p)]
    except tiledb.TileDBError:
        return []


def _last(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def describe(ref: ArrayRef, array: tiledb.Array) -> apb.ArraySchema:
    """The ArraySchema message of an open array."""
    schema = array.schema
    dims = [_dimension(schema.domain.dim(i)) for i in range(schema.domain.ndim)]
    attrs = [
        apb.Attribute(name=a.name, type=_type_name(a.dtype), nullable=a.isnullable, var=a.isvar)
        for a in (schema.attr(i) for i in range(schema.nattr))
    ]
    return apb.ArraySchema(
        uri=ref.name,
        sparse=schema.sparse,
        dimensions=dims,
        attributes=attrs,
        cell_order=schema.cell_order,
        tile_order=schema.tile_order or "",
        allows_duplicates=bool(schema.sparse and schema.allows_duplicates),
    )


def _dimension(dim: tiledb.Dim) -> apb.Dimension:
    if dim.isvar or dim.dtype.kind in "SU":
        return apb.Dimension(name=dim.name, type="ascii", var=True)
    start, end = dim.domain
    return apb.Dimension(
        name=dim.name,
        type=_type_name(dim.dtype),
        domain_start=to_scalar(start),
        domain_end=to_scalar(end),
    )


def _type_name(dtype: np.dtype[Any]) -> str:
    return str(dtype) if dtype.kind != "S" else "bytes"


def to_scalar(value: object) -> udf_pb2.Scalar:
    """A coordinate as a Scalar message (datetimes as ISO text)."""
    if isinstance(value, np.datetime64):
        return udf_pb2.Scalar(datetime_value=str(value))
    if isinstance(value, np.floating | float):
        return udf_pb2.Scalar(double_value=float(value))
    if isinstance(value, np.unsignedinteger):
        return udf_pb2.Scalar(uint64_value=int(value))
    if isinstance(value, np.integer | int):
        return udf_pb2.Scalar(int64_value=int(value))
    return udf_pb2.Scalar(string_value=str(value))
