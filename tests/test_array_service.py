"""ArrayService end to end: listing the served arrays, in pages, and their schemas."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tilefn.client import ArrayInfo, Client
from tilefn.client._exceptions import from_rpc_error
from tilefn.v1 import array_service_pb2, array_service_pb2_grpc

from arrays_support import (
    DAILY,
    DENSE,
    EVENTS,
    POINTS,
    READINGS,
    SPARSE,
    WIDE,
    C,
    D,
    check,
    uri,
)
from conftest import ServerProcess, authed_channel

pytestmark = pytest.mark.usefixtures("still_serving")


@pytest.fixture
def client(array_client: Client) -> Client:
    """The array server's client (overrides conftest's client of the shared server)."""
    return array_client


def test_list_arrays(client: Client) -> None:
    expected = [ArrayInfo(uri(n), n.split("/")[0], SPARSE[n]) for n in sorted(SPARSE)]
    assert client.arrays() == expected
    assert client.arrays("acme") == [a for a in expected if a.namespace == "acme"]
    assert client.arrays("other") == [ArrayInfo(uri(WIDE), "other", False)]
    for namespace in ("nobody", "../acme", "acme/dense", ".."):
        assert client.arrays(namespace) == []


def test_list_arrays_in_pages(array_server: ServerProcess) -> None:
    def list_arrays(**fields: Any) -> array_service_pb2.ListArraysResponse:
        response: array_service_pb2.ListArraysResponse = stub.ListArrays(
            array_service_pb2.ListArraysRequest(**fields), timeout=30
        )
        return response

    names = [uri(n) for n in sorted(SPARSE)]
    with authed_channel(array_server.address) as channel:
        stub = array_service_pb2_grpc.ArrayServiceStub(channel)
        pages = [list_arrays(page_size=2)]
        while pages[-1].next_page_token:
            pages.append(list_arrays(page_size=2, page_token=pages[-1].next_page_token))
        acme = list_arrays(namespace="acme", page_size=3)
        with pytest.raises(grpc.RpcError) as caught:
            list_arrays(page_size=1001)
    assert [[a.uri for a in page.arrays] for page in pages] == [
        names[i : i + 2] for i in range(0, len(names), 2)
    ]
    acme_names = [n for n in names if n.startswith("tiledb://acme/")]
    assert ([a.uri for a in acme.arrays], acme.next_page_token) == (acme_names[:3], acme_names[2])
    check(from_rpc_error(caught.value), C.INVALID_ARGUMENT, "OPTION_INVALID", task=False)


def _dim(name: str, kind: str, low: Any, high: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "var": False, "domain": (low, high)}


def _attr(name: str, kind: str, *, nullable: bool = False, var: bool = False) -> dict[str, Any]:
    return {"name": name, "type": kind, "nullable": nullable, "var": var}


def _schema(name: str, dims: list[Any], attrs: list[Any], **rest: Any) -> dict[str, Any]:
    return {
        "uri": uri(name), "sparse": SPARSE[name], "dimensions": dims, "attributes": attrs,
        "cell_order": "row-major", "tile_order": "row-major", "allows_duplicates": False, **rest,
    }  # fmt: skip


SCHEMAS = {
    DENSE: _schema(
        DENSE,
        [_dim("row", "int64", 0, 19), _dim("col", "int64", -5, 9)],
        [_attr("a", "float64"), _attr("b", "int32")],
    ),
    DAILY: _schema(
        DAILY,
        [_dim("day", "datetime64[D]", D("2024-01-01"), D("2024-12-31"))],
        [_attr("temp", "float64"), _attr("rain", "int32")],
    ),
    READINGS: _schema(
        READINGS,
        [
            {"name": "station", "type": "ascii", "var": True, "domain": None},
            _dim("k", "int64", 0, 999),
        ],
        [_attr("temp", "float32"), _attr("note", "<U0", nullable=True, var=True)],
    ),
    POINTS: _schema(
        POINTS,
        [_dim("x", "float64", -100.0, 100.0), _dim("y", "float64", -100.0, 100.0)],
        [_attr("v", "int64")],
        cell_order="hilbert",
        tile_order="",
        allows_duplicates=True,
    ),
    EVENTS: _schema(
        EVENTS,
        [_dim("t", "int64", 0, 9_999_999)],
        [_attr("v", "float64"), _attr("tag", "<U0", var=True)],
    ),
    WIDE: _schema(
        WIDE,
        [_dim("i", "int64", 0, 9)],
        [_attr(n, t) for n, t in [("i8", "int8"), ("u16", "uint16"), ("f32", "float32")]]
        + [_attr("f64", "float64"), _attr("label", "<U0", var=True)],
        cell_order="col-major",
        tile_order="col-major",
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema(client: Client, name: str) -> None:
    got = client.schema(uri(name))
    assert got == SCHEMAS[name]
    assert [type(v) for d in got["dimensions"] for v in d["domain"] or ()] == [
        type(v) for d in SCHEMAS[name]["dimensions"] for v in d["domain"] or ()
    ]
