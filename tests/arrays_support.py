"""The arrays the array tests read, the server that serves them, and how to check its answers.

A pytest plugin (``pytest_plugins`` in conftest.py), not a test module. Its fixtures are
session-scoped so the arrays are written and their server started once for every module that
uses them (test_arrays_reads.py, test_arrays_errors.py, test_array_service.py). Each of those
modules overrides conftest's ``client`` with ``array_client`` and applies ``still_serving`` to
all its tests:

    pytestmark = pytest.mark.usefixtures("still_serving")

Equivalence checks run the same function on the service's read and on a local tiledb-py read
(``local_read``) with the same ranges, attributes, layout and condition, and compare every
column's values, dtype, shape and key order (``assert_same``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tiledb

from tilefn.client import ArrayRead, Client, TilefnError

from conftest import ServerProcess, wait_for

C = grpc.StatusCode
Columns = Mapping[str, np.ndarray]
T = datetime.date
D = np.datetime64

DENSE = "acme/dense"  # row 0..19 x col -5..9, a float64, b int32
DAILY = "acme/daily"  # day 2024-01-01..2024-12-31 (datetime64[D]), temp float64, rain int32
READINGS = "acme/readings"  # sparse: station ascii x k int64, temp float32, note nullable str
POINTS = "acme/points"  # sparse, Hilbert order, duplicates: x, y float64, v int64
WIDE = "other/wide"  # dense 1-D, col-major, five attributes of different types
EVENTS = "acme/events"  # sparse 1-D, 150k cells: several read batches of at least 1 MiB each
SPARSE = {DENSE: False, DAILY: False, READINGS: True, POINTS: True, WIDE: False, EVENTS: True}
NULL_NOTES = 20  # READINGS cells written with note None


def uri(name: str) -> str:
    return f"tiledb://{name}"


def at(name: str, ranges: Sequence[Any] | None = None, **rest: Any) -> ArrayRead:
    """A read of one of the served arrays."""
    return ArrayRead(uri(name), ranges, **rest)


# ---------------------------------------------------------------- arrays


def create_dense(path: str) -> None:
    domain = tiledb.Domain(
        tiledb.Dim("row", domain=(0, 19), tile=5, dtype=np.int64),
        tiledb.Dim("col", domain=(-5, 9), tile=5, dtype=np.int64),
    )
    attrs = [tiledb.Attr("a", dtype=np.float64), tiledb.Attr("b", dtype=np.int32)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs))
    a = np.arange(300, dtype=np.float64).reshape(20, 15) * 0.5
    with tiledb.open(path, "w") as array:
        array[:] = {"a": a, "b": (np.arange(300) % 7).astype(np.int32).reshape(20, 15)}


def create_daily(path: str) -> None:
    start, end = np.datetime64("2024-01-01"), np.datetime64("2024-12-31")
    dim = tiledb.Dim("day", domain=(start, end), tile=np.timedelta64(30, "D"), dtype="M8[D]")
    attrs = [tiledb.Attr("temp", dtype=np.float64), tiledb.Attr("rain", dtype=np.int32)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=tiledb.Domain(dim), attrs=attrs))
    days = np.arange(366)
    with tiledb.open(path, "w") as array:
        array[:] = {"temp": 10 + 12 * np.sin(days / 58.0), "rain": (days % 13).astype(np.int32)}


def create_readings(path: str) -> None:
    domain = tiledb.Domain(
        tiledb.Dim("station", dtype="ascii"),
        tiledb.Dim("k", domain=(0, 999), tile=100, dtype=np.int64),
    )
    attrs = [
        tiledb.Attr("temp", dtype=np.float32),
        tiledb.Attr("note", dtype=str, var=True, nullable=True),
    ]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs, sparse=True))
    n = 60
    notes = [None if i % 3 == 0 else ("naïve" if i == 4 else f"n{i}") for i in range(n)]
    with tiledb.open(path, "w") as array:
        array[np.array(list("ABCDE") * 12), np.arange(n) * 16] = {
            "temp": np.linspace(-10, 50, n, dtype=np.float32),
            "note": np.array(notes, dtype=object),
        }


def create_points(path: str) -> None:
    domain = tiledb.Domain(
        tiledb.Dim("x", domain=(-100.0, 100.0), tile=20.0, dtype=np.float64),
        tiledb.Dim("y", domain=(-100.0, 100.0), tile=20.0, dtype=np.float64),
    )
    attrs = [tiledb.Attr("v", dtype=np.int64)]
    schema = tiledb.ArraySchema(
        domain=domain, attrs=attrs, sparse=True, cell_order="hilbert", allows_duplicates=True
    )
    tiledb.Array.create(path, schema)
    x, y = np.random.default_rng(3).uniform(-100, 100, (2, 50))
    x[7], y[7] = x[3], y[3]  # one duplicate cell
    with tiledb.open(path, "w") as array:
        array[x, y] = {"v": np.arange(50)}


def create_wide(path: str) -> None:
    domain = tiledb.Domain(tiledb.Dim("i", domain=(0, 9), tile=10, dtype=np.int64))
    attrs = [
        tiledb.Attr("i8", dtype=np.int8),
        tiledb.Attr("u16", dtype=np.uint16),
        tiledb.Attr("f32", dtype=np.float32),
        tiledb.Attr("f64", dtype=np.float64),
        tiledb.Attr("label", dtype=str, var=True),
    ]
    schema = tiledb.ArraySchema(
        domain=domain, attrs=attrs, cell_order="col-major", tile_order="col-major"
    )
    tiledb.Array.create(path, schema)
    i = np.arange(10)
    with tiledb.open(path, "w") as array:
        array[:] = {
            "i8": (i - 5).astype(np.int8),
            "u16": (i * 1000).astype(np.uint16),
            "f32": (i / 4).astype(np.float32),
            "f64": i * 1e300,
            "label": np.array([f"label-{j}" * j for j in i], dtype=object),
        }


def create_events(path: str) -> None:
    domain = tiledb.Domain(tiledb.Dim("t", domain=(0, 9_999_999), tile=100_000, dtype=np.int64))
    attrs = [tiledb.Attr("v", dtype=np.float64), tiledb.Attr("tag", dtype=str, var=True)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs, sparse=True))
    t = np.arange(150_000) * 61
    with tiledb.open(path, "w") as array:
        array[t] = {"v": t / 7, "tag": np.array([f"e{i % 97}" for i in t], dtype=object)}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The arrays, plus things under the root that are not arrays and must not be listed."""
    root = tmp_path_factory.mktemp("data")
    for name, create in (
        (DENSE, create_dense),
        (DAILY, create_daily),
        (READINGS, create_readings),
        (POINTS, create_points),
        (WIDE, create_wide),
        (EVENTS, create_events),
    ):
        (root / name).parent.mkdir(exist_ok=True)
        create(str(root / name))
    (root / "acme" / "README.txt").write_text("not an array")
    (root / "acme" / "empty").mkdir()
    tiledb.Group.create(str(root / "other" / "group"))
    return root


@pytest.fixture(scope="session")
def array_server(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path
) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("array-server"), "--data-root", str(data_root))
    yield proc
    assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture(scope="session")
def array_client(array_server: ServerProcess) -> Iterator[Client]:
    """A client of the server of the arrays (modules using it override conftest's client)."""
    with Client(array_server.address) as c:
        yield c


@pytest.fixture
def still_serving(array_server: ServerProcess, array_client: Client) -> Iterator[None]:
    """After the test the array server still runs UDFs and has not leaked workers."""
    yield
    assert array_client.exec(lambda: 40 + 2) == 42
    limit = 8 + 2  # max_workers + ready_workers (defaults)
    wait_for(lambda: len(array_server.worker_pids()) <= limit, what="worker count to settle")


# ---------------------------------------------------------------- local reads


def _bound(dim: tiledb.Dim, value: Any) -> Any:
    """A client range bound as tiledb-py takes it (dates and raw day counts as datetime64)."""
    return np.array(value, dtype=dim.dtype)[()] if dim.dtype.kind == "M" else value


def _subscript(dim: tiledb.Dim, ranges: Any) -> Any:
    if ranges is None or (isinstance(ranges, list) and not ranges):
        return slice(None)
    if isinstance(ranges, tuple):
        return slice(_bound(dim, ranges[0]), _bound(dim, ranges[1]))
    return [slice(_bound(dim, s), _bound(dim, e)) for s, e in ranges]


def local_read(root: Path, read: ArrayRead) -> Columns:
    """What tiledb-py reads locally for the same ranges, attributes, layout and condition."""
    with tiledb.open(str(root / read.uri.removeprefix("tiledb://"))) as array:
        domain = array.schema.domain
        dims = [domain.dim(i) for i in range(domain.ndim)]
        names = {d.name for d in dims}
        ranges = list(read.ranges or ())
        query = array.query(
            attrs=[a for a in read.attrs if a not in names] if read.attrs else None,
            dims=[a for a in read.attrs if a in names] if read.attrs else None,
            order=read.layout or ("U" if array.schema.sparse else "C"),
            cond=read.condition,
        )
        ranges += [None] * (len(dims) - len(ranges))
        result: Columns = query.multi_index[
            tuple(_subscript(d, r) for d, r in zip(dims, ranges, strict=True))
        ]
        return result


def assert_same(got: Columns, want: Columns) -> None:
    """Same keys in the same order; each column with the same dtype, shape and values."""
    assert list(got) == list(want)
    for key, expected in want.items():
        value = got[key]
        assert (value.dtype, value.shape) == (expected.dtype, expected.shape), key
        if expected.dtype == object:
            assert [type(v) for v in value.flat] == [type(v) for v in expected.flat], key
            assert value.tolist() == expected.tolist(), key
        else:
            np.testing.assert_array_equal(value, expected, err_msg=key, strict=True)


# ---------------------------------------------------------------- errors


def check(error: TilefnError, code: grpc.StatusCode, reason: str, *, task: bool = True) -> None:
    """Code and reason as documented; executions (not ArrayService calls) name their task."""
    assert (error.code, error.reason) == (code, f"ERROR_REASON_{reason}"), str(error)
    assert bool(error.task_id) is task, "only executions have tasks"


def refused(client: Client, read: ArrayRead, code: grpc.StatusCode, reason: str) -> TilefnError:
    """Apply a read that must fail; return its error after checking code and reason."""
    with pytest.raises(TilefnError) as caught:
        client.apply(read, len)
    check(caught.value, code, reason)
    return caught.value


def schema_refused(client: Client, name: str, code: grpc.StatusCode, reason: str) -> TilefnError:
    with pytest.raises(TilefnError) as caught:
        client.schema(name)
    check(caught.value, code, reason, task=False)
    return caught.value
