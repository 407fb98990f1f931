"""Array reads the service refuses: unknown arrays, bad ranges, attributes, conditions, layouts
and names; raw URIs and symlinks out of the data root; the memory budget; oversized cells.

Every refusal is checked for its gRPC code and error reason (arrays_support.check), and errors
must not leak server paths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import tiledb

from tilefn.client import ArrayInfo, ArrayRead, Client, TilefnError
from tilefn.client._exceptions import from_rpc_error
from tilefn.server import _reader
from tilefn.server._status import ServiceError
from tilefn.v1 import udf_pb2, udf_service_pb2, udf_service_pb2_grpc

from arrays_support import (
    DAILY,
    DENSE,
    POINTS,
    READINGS,
    C,
    T,
    assert_same,
    at,
    check,
    create_dense,
    create_wide,
    local_read,
    refused,
    schema_refused,
    uri,
)
from conftest import ServerProcess, authed_channel

pytestmark = pytest.mark.usefixtures("still_serving")


@pytest.fixture
def client(array_client: Client) -> Client:
    """The array server's client (overrides conftest's client of the shared server)."""
    return array_client


# ---------------------------------------------------------------- budget


@pytest.fixture
def small_budget(make_server: Callable[..., ServerProcess], data_root: Path) -> Iterator[Client]:
    """A 1 KiB budget: 4 dense rows (720 bytes) fit, the whole dense array (3600) does not."""
    server = make_server("--data-root", str(data_root), "--array-memory-budget", "1024")
    with Client(server.address) as c:
        yield c


@pytest.mark.parametrize(
    "reads",
    [
        pytest.param([at(DENSE)], id="dense"),
        pytest.param([at(READINGS)], id="sparse"),
        pytest.param([at(DENSE, [(0, 3)])] * 2, id="two-reads-together"),
    ],
)
def test_read_over_the_budget(
    small_budget: Client, data_root: Path, reads: list[ArrayRead]
) -> None:
    with pytest.raises(TilefnError) as caught:
        small_budget.apply_multi(reads, len)
    check(caught.value, C.RESOURCE_EXHAUSTED, "ARRAY_READ_TOO_LARGE")
    assert caught.value.metadata == {"array": reads[0].uri, "budget_bytes": "1024"}
    read = at(DENSE, [(0, 3)])  # and the server goes on serving reads that fit
    assert_same(small_budget.apply(read, dict), dict(local_read(data_root, read)))


def test_a_read_over_the_budget_waits_for_the_block_read_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server closes the array as soon as read() fails: no block may still be reading it."""
    next_block_read = threading.Event()

    def blocks(*_: Any) -> Iterator[dict[str, np.ndarray]]:
        yield {"v": np.zeros(256)}  # 2 KiB, over the budget
        next_block_read.wait(0.5)  # a slow storage read of the next block, already under way
        next_block_read.set()
        yield {"v": np.zeros(256)}

    monkeypatch.setattr(_reader, "blocks", blocks)
    array = SimpleNamespace(schema=SimpleNamespace(sparse=True))
    plan = SimpleNamespace(ref=SimpleNamespace(name="a"), order="U")
    read_when_closed = []
    with pytest.raises(ServiceError):
        try:
            _reader.read(array, plan, _reader.Budget(1024), 1024)  # type: ignore[arg-type]
        finally:  # where the server's `with` closes the array
            read_when_closed.append(next_block_read.is_set())
    assert read_when_closed == [True]


# ---------------------------------------------------------------- errors


def test_unknown_arrays(client: Client) -> None:
    for name in ("tiledb://acme/nope", "tiledb://nobody/dense", "tiledb://acme/empty"):
        error = refused(client, ArrayRead(name), C.NOT_FOUND, "ARRAY_NOT_FOUND")
        assert error.metadata == {"array": name}
        schema_refused(client, name, C.NOT_FOUND, "ARRAY_NOT_FOUND")


@pytest.mark.parametrize(
    ("read", "dimension", "needle"),
    [
        pytest.param(at(DENSE, [(0, 20)]), "row", "outside the domain", id="past-the-end"),
        pytest.param(at(DENSE, [None, (-6, 0)]), "col", "outside the domain", id="before-start"),
        pytest.param(at(DAILY, [(T(2023, 12, 31), T(2024, 1, 2))]), "day", "outside", id="date"),
        pytest.param(at(READINGS, [None, (990, 1000)]), "k", "outside the domain", id="sparse"),
        pytest.param(at(POINTS, [(-100.5, 0.0)]), "x", "outside the domain", id="float"),
        pytest.param(at(DENSE, [("a", "b")]), "row", "expects a int64 value; got string", id="s"),
        pytest.param(at(DENSE, [(1.5, 2.5)]), "row", "got double", id="float-on-int"),
        pytest.param(at(READINGS, [(1, 2)]), "station", "expects a string; got int64", id="num"),
        pytest.param(at(DAILY, [("2024-01-01", "2024-01-02")]), "day", "got string", id="iso"),
        pytest.param(at(DENSE, [(7, 2)]), "row", "reversed", id="reversed"),
        pytest.param(at(READINGS, [("C", "A")]), "station", "reversed", id="reversed-string"),
        pytest.param(at(POINTS, [None, (5.0, -5.0)]), "y", "reversed", id="reversed-float"),
        pytest.param(at(DENSE, [(0, 2**63)]), "row", "bad coordinate", id="beyond-int64"),
        pytest.param(at(DENSE, [None] * 3), "", "3 range lists for 2 dimensions", id="extra"),
    ],
)
def test_bad_ranges(client: Client, read: ArrayRead, dimension: str, needle: str) -> None:
    error = refused(client, read, C.INVALID_ARGUMENT, "ARRAY_RANGE_INVALID")
    assert error.metadata == {"array": read.uri, "dimension": dimension}
    assert needle in error.message
    assert repr(dimension) in error.message or not dimension


@pytest.mark.parametrize("attrs", [("nope",), ("a", "nope"), ("A",)])
def test_unknown_attribute(client: Client, attrs: tuple[str, ...]) -> None:
    error = refused(client, at(DENSE, attrs=attrs), C.INVALID_ARGUMENT, "ARRAY_ATTRIBUTE_UNKNOWN")
    assert error.metadata == {"array": uri(DENSE), "attribute": attrs[-1]}
    assert repr(attrs[-1]) in error.message


@pytest.mark.parametrize(
    ("read", "needle"),
    [
        (at(READINGS, condition="temp >>> 1"), "Could not parse the given QueryCondition"),
        (at(READINGS, condition="temp > "), "Could not parse the given QueryCondition"),
        (at(READINGS, condition="bogus > 1"), "Unknown attribute or dimension ('bogus')"),
        (at(DENSE, condition="a > 1 and nope == 2"), "Unknown attribute or dimension ('nope')"),
        (at(READINGS, condition="temp"), "Malformed query condition statement"),
        (at(READINGS, condition="k > 'x'"), "Cannot cast `x` to int64"),
        (at(DENSE, condition="row > 3"), "Cannot apply query condition to dimensions on dense"),
    ],
    ids=["operator", "truncated", "unknown", "unknown-dense", "no-comparison", "type", "dim"],
)
def test_bad_condition(client: Client, data_root: Path, read: ArrayRead, needle: str) -> None:
    error = refused(client, read, C.INVALID_ARGUMENT, "ARRAY_CONDITION_INVALID")
    assert needle in error.message
    assert str(data_root) not in error.message and ".py" not in error.message  # no traceback


def test_unknown_layout(array_server: ServerProcess) -> None:
    array = at(DENSE).to_proto()
    array.layout = 42  # type: ignore[assignment]
    request = udf_service_pb2.ExecuteUdfRequest(
        udf=udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text="def f(d):\n    return 1\n")),
        arrays=[array],
    )
    with authed_channel(array_server.address) as channel:
        stub = udf_service_pb2_grpc.UdfServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ExecuteUdf(request, timeout=60))
    error = from_rpc_error(caught.value)
    check(error, C.INVALID_ARGUMENT, "OPTION_INVALID")
    assert error.metadata["option"] == "layout"


@pytest.mark.parametrize(
    "name",
    [
        "tiledb://a",
        "tiledb://a/b/c",
        "tiledb://../x",
        "tiledb://acme/..",
        "tiledb://acme/",
        "tiledb:///dense",
        "tiledb://acme/.hidden",
        "tiledb://acme/a b",
        "",
    ],
)
def test_malformed_names(client: Client, data_root: Path, name: str) -> None:
    error = refused(client, ArrayRead(name), C.INVALID_ARGUMENT, "ARRAY_NAME_INVALID")
    assert str(data_root) not in error.message
    schema_refused(client, name, C.INVALID_ARGUMENT, "ARRAY_NAME_INVALID")


# ---------------------------------------------------------------- raw URIs and symlinks


def assert_no_leak(error: TilefnError, written: str, *paths: Path) -> None:
    """Apart from echoing what the client wrote, the message names no server path."""
    rest = error.message.replace(written, "<written>")
    for path in paths:
        assert str(path) not in rest, error.message


def test_raw_uris_are_refused_by_default(client: Client, data_root: Path) -> None:
    path = str(data_root / DENSE)
    for raw in (path, f"file://{path}", "s3://bucket/acme/dense", "mem://x"):
        error = refused(client, ArrayRead(raw), C.PERMISSION_DENIED, "ARRAY_URI_REFUSED")
        assert_no_leak(error, raw, data_root)
        schema_refused(client, raw, C.PERMISSION_DENIED, "ARRAY_URI_REFUSED")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A readable array outside every data root."""
    path = tmp_path / "outside" / "arr"
    path.parent.mkdir()
    create_wide(str(path))
    return path


@pytest.fixture
def raw_client(make_server: Callable[..., ServerProcess], data_root: Path) -> Iterator[Client]:
    server = make_server("--data-root", str(data_root), "--allow-raw-uris")
    with Client(server.address) as c:
        yield c


def test_allowed_raw_uris_inside_the_root(raw_client: Client, data_root: Path) -> None:
    path = str(data_root / DENSE)
    want = dict(local_read(data_root, at(DENSE, [(3, 5)])))
    for raw in (path, f"file://{path}", f"{path}/"):
        assert_same(raw_client.apply(raw, dict, ranges=[(3, 5)]), want)
    assert raw_client.schema(path)["uri"] == path


def test_allowed_raw_uris_outside_the_root_are_refused(
    raw_client: Client, data_root: Path, outside: Path
) -> None:
    for raw in (
        str(outside),
        f"file://{outside}",
        f"{data_root}/acme/../acme/dense",  # inside, but '..' is refused wherever it leads
        f"{data_root}/../{data_root.name}/acme/dense",
        f"{outside}/../arr",
        f"file://{data_root}/../outside",
        "/",
    ):
        error = refused(raw_client, ArrayRead(raw), C.PERMISSION_DENIED, "ARRAY_URI_REFUSED")
        assert_no_leak(error, raw, data_root, outside)


@pytest.fixture
def escape(
    make_server: Callable[..., ServerProcess], tmp_path: Path, outside: Path
) -> Iterator[tuple[Client, Path]]:
    """A data root with one array and symlinks to outside it (an array, a namespace)."""
    root = tmp_path / "root"
    (root / "acme").mkdir(parents=True)
    create_dense(str(root / "acme" / "inside"))
    (root / "acme" / "escape").symlink_to(outside)
    (root / "elsewhere").symlink_to(outside.parent)
    server = make_server("--data-root", str(root), "--allow-raw-uris")
    with Client(server.address) as c:
        yield c, root


def test_symlinks_out_of_the_root_are_refused(escape: tuple[Client, Path], outside: Path) -> None:
    client, root = escape
    assert client.apply("tiledb://acme/inside", lambda d: d["a"].shape) == [20, 15]
    assert client.apply(str(root / "acme" / "inside"), lambda d: d["a"].shape) == [20, 15]
    for name in ("tiledb://acme/escape", "tiledb://elsewhere/arr", str(root / "acme" / "escape")):
        error = refused(client, ArrayRead(name), C.PERMISSION_DENIED, "ARRAY_URI_REFUSED")
        assert_no_leak(error, name, root, outside)
        error = schema_refused(client, name, C.PERMISSION_DENIED, "ARRAY_URI_REFUSED")
        assert_no_leak(error, name, root, outside)


# ---------------------------------------------------------------- regressions
# Bugs these tests found (fixed in 7a041bb); each test failed before the fix.


def test_symlinks_out_of_the_root_are_not_listed(escape: tuple[Client, Path]) -> None:
    client, _ = escape
    assert client.arrays() == [ArrayInfo("tiledb://acme/inside", "acme", False)]
    assert client.arrays("elsewhere") == []


def test_nan_range_names_its_dimension(client: Client) -> None:
    read = at(POINTS, [None, (0.0, float("nan"))])
    error = refused(client, read, C.INVALID_ARGUMENT, "ARRAY_RANGE_INVALID")
    assert error.metadata == {"array": uri(POINTS), "dimension": "y"}
    assert "NaN" in error.message


def test_unordered_layout_on_a_dense_array(client: Client) -> None:
    error = refused(client, at(DENSE, layout="U"), C.INVALID_ARGUMENT, "OPTION_INVALID")
    assert error.metadata["option"] == "layout"


@pytest.mark.parametrize("raw", ["xyz://bucket/array", "FILE:///tmp/array", "vfs://x/y"])
def test_unknown_uri_scheme(raw_client: Client, data_root: Path, raw: str) -> None:
    error = refused(raw_client, ArrayRead(raw), C.INVALID_ARGUMENT, "ARRAY_NAME_INVALID")
    assert_no_leak(error, raw, data_root)
    schema_refused(raw_client, raw, C.INVALID_ARGUMENT, "ARRAY_NAME_INVALID")


def test_a_cell_larger_than_the_read_buffer_fails_promptly(tmp_path: Path) -> None:
    """The read used to spin forever (TileDB returns empty batches), and SIGTERM then hung."""
    root = tmp_path / "root"
    (root / "acme").mkdir(parents=True)
    domain = tiledb.Domain(tiledb.Dim("k", domain=(0, 9), tile=10, dtype=np.int64))
    attrs = [tiledb.Attr("s", dtype=str, var=True)]
    path = str(root / "acme" / "blob")
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs, sparse=True))
    with tiledb.open(path, "w") as array:  # the server's smallest sparse buffer is 1 MiB
        array[np.array([1, 2, 3])] = {"s": np.array(["x", "y" * (2 << 20), "z"], dtype=object)}
    server = ServerProcess(tmp_path, "--data-root", str(root), "--read-block-bytes", "1024")
    try:
        with Client(server.address) as c:
            error = refused(
                c.with_options(timeout=1), ArrayRead("tiledb://acme/blob"),
                C.RESOURCE_EXHAUSTED, "ARRAY_READ_TOO_LARGE",
            )  # fmt: skip
            assert "--read-block-bytes" in error.message
            assert c.apply("tiledb://acme/blob", len, ranges=[(3, 3)]) == 2  # k and s
    except BaseException:
        server.process.kill()  # a stuck read thread would keep SIGTERM from stopping it
        server.stop()
        raise
    assert server.stop() == 0, server.log_path.read_text()
