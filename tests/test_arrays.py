"""Array UDFs end to end: a real server reads real TileDB arrays; results equal local reads.

Every equivalence test runs the same function on the service's read and on a local tiledb-py
read with the same ranges, attributes, layout and condition, and compares every column's values,
dtype, shape and key order.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import grpc
import numpy as np
import pytest
import tiledb

from tilefn.client import (
    ArrayInfo,
    ArrayRead,
    AsyncClient,
    Client,
    TilefnError,
    UdfError,
)
from tilefn.client._exceptions import from_rpc_error
from tilefn.v1 import (
    array_service_pb2,
    array_service_pb2_grpc,
    udf_pb2,
    udf_service_pb2,
    udf_service_pb2_grpc,
)

from conftest import ServerProcess, wait_for

C = grpc.StatusCode
Columns = Mapping[str, np.ndarray]

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


# ---------------------------------------------------------------- arrays and servers


def _create_dense(path: str) -> None:
    domain = tiledb.Domain(
        tiledb.Dim("row", domain=(0, 19), tile=5, dtype=np.int64),
        tiledb.Dim("col", domain=(-5, 9), tile=5, dtype=np.int64),
    )
    attrs = [tiledb.Attr("a", dtype=np.float64), tiledb.Attr("b", dtype=np.int32)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs))
    a = np.arange(300, dtype=np.float64).reshape(20, 15) * 0.5
    with tiledb.open(path, "w") as array:
        array[:] = {"a": a, "b": (np.arange(300) % 7).astype(np.int32).reshape(20, 15)}


def _create_daily(path: str) -> None:
    start, end = np.datetime64("2024-01-01"), np.datetime64("2024-12-31")
    dim = tiledb.Dim("day", domain=(start, end), tile=np.timedelta64(30, "D"), dtype="M8[D]")
    attrs = [tiledb.Attr("temp", dtype=np.float64), tiledb.Attr("rain", dtype=np.int32)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=tiledb.Domain(dim), attrs=attrs))
    days = np.arange(366)
    with tiledb.open(path, "w") as array:
        array[:] = {"temp": 10 + 12 * np.sin(days / 58.0), "rain": (days % 13).astype(np.int32)}


def _create_readings(path: str) -> None:
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


def _create_points(path: str) -> None:
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


def _create_wide(path: str) -> None:
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


def _create_events(path: str) -> None:
    domain = tiledb.Domain(tiledb.Dim("t", domain=(0, 9_999_999), tile=100_000, dtype=np.int64))
    attrs = [tiledb.Attr("v", dtype=np.float64), tiledb.Attr("tag", dtype=str, var=True)]
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=attrs, sparse=True))
    t = np.arange(150_000) * 61
    with tiledb.open(path, "w") as array:
        array[t] = {"v": t / 7, "tag": np.array([f"e{i % 97}" for i in t], dtype=object)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The arrays, plus things under the root that are not arrays and must not be listed."""
    root = tmp_path_factory.mktemp("data")
    for name, create in (
        (DENSE, _create_dense),
        (DAILY, _create_daily),
        (READINGS, _create_readings),
        (POINTS, _create_points),
        (WIDE, _create_wide),
        (EVENTS, _create_events),
    ):
        (root / name).parent.mkdir(exist_ok=True)
        create(str(root / name))
    (root / "acme" / "README.txt").write_text("not an array")
    (root / "acme" / "empty").mkdir()
    tiledb.Group.create(str(root / "other" / "group"))
    return root


@pytest.fixture(scope="module")
def array_server(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path
) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("array-server"), "--data-root", str(data_root))
    yield proc
    assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture(scope="module")
def client(array_server: ServerProcess) -> Iterator[Client]:
    """A client of the module's server (overrides conftest's client of the shared server)."""
    with Client(array_server.address) as c:
        yield c


@pytest.fixture(scope="module")
def small_blocks(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[Client]:
    """A server reading dense arrays in 256-byte blocks, sparse ones in 1 MiB batches."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("small-blocks"),
        "--data-root", str(data_root), "--read-block-bytes", "256",
    )  # fmt: skip
    with Client(proc.address) as c:
        yield c
    assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture(autouse=True)
def _still_serving(array_server: ServerProcess, client: Client) -> Iterator[None]:
    """After every test the module's server still runs UDFs and has not leaked workers."""
    yield
    assert client.exec(lambda: 40 + 2) == 42
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


def at(name: str, ranges: Sequence[Any] | None = None, **rest: Any) -> ArrayRead:
    """A read of one of the module's arrays."""
    return ArrayRead(uri(name), ranges, **rest)


# ---------------------------------------------------------------- equivalence

T = datetime.date
D = np.datetime64
DAY0 = int(D("2024-02-10").astype(np.int64))

CASES = [
    pytest.param(at(DENSE, [(2, 7), (-3, 4)]), id="dense-single-range"),
    pytest.param(at(DENSE, [[(0, 1), (10, 12)], (0, 4)]), id="dense-multi-range"),
    pytest.param(
        at(DENSE, [[(15, 17), (2, 3), (3, 4)], [(-5, -5), (9, 9)]]),
        id="dense-unsorted-overlapping-ranges",
    ),
    pytest.param(at(DENSE), id="dense-whole-domain"),
    pytest.param(at(DENSE, [[], None]), id="dense-empty-range-lists"),
    pytest.param(at(DENSE, [(4, 4)]), id="dense-fewer-range-lists-than-dims"),
    pytest.param(at(DENSE, [(2, 7), (-3, 4)], layout="F"), id="dense-col-major"),
    pytest.param(at(DENSE, layout="F"), id="dense-col-major-whole"),
    pytest.param(at(DENSE, [(0, 9), (0, 9)], layout="G"), id="dense-global-order"),
    pytest.param(at(DENSE, [(0, 3)], attrs=("b",)), id="dense-one-attribute"),
    pytest.param(at(DENSE, [(0, 3)], attrs=("row", "b")), id="dense-dim-and-attr"),
    pytest.param(at(DENSE, [(0, 3)], attrs=("col",)), id="dense-dimension-only"),
    pytest.param(at(DENSE, [(0, 5)], condition="b > 3"), id="dense-condition"),
    pytest.param(at(DAILY, [(D("2024-02-10"), D("2024-03-05"))]), id="dates-datetime64"),
    pytest.param(at(DAILY, [(T(2024, 2, 28), T(2024, 3, 1))]), id="dates-leap-day"),
    pytest.param(at(DAILY, [(DAY0, DAY0 + 9)]), id="dates-raw-days"),
    pytest.param(
        at(DAILY, [[(D("2024-12-25"), D("2024-12-31")), (D("2024-01-01"), D("2024-01-03"))]]),
        id="dates-multi-range",
    ),
    pytest.param(at(DAILY, attrs=("rain",), layout="F"), id="dates-whole-col-major"),
    pytest.param(at(READINGS), id="sparse-whole-domain"),
    pytest.param(at(READINGS, [("A", "B")]), id="sparse-string-range"),
    pytest.param(at(READINGS, [[("A", "A"), ("C", "D")]]), id="sparse-string-multi-range"),
    pytest.param(at(READINGS, [("B", "Bz"), (100, 400)]), id="sparse-both-dims"),
    pytest.param(
        at(READINGS, [[("B", "C"), ("E", "E")], [(0, 99), (300, 999)]]),
        id="sparse-multi-range-both-dims",
    ),
    pytest.param(at(READINGS, layout="U"), id="sparse-unordered"),
    pytest.param(at(READINGS, layout="C"), id="sparse-row-major"),
    pytest.param(at(READINGS, layout="G"), id="sparse-global-order"),
    pytest.param(at(READINGS, attrs=("temp",)), id="sparse-one-attribute"),
    pytest.param(at(READINGS, attrs=("note", "k")), id="sparse-attr-and-dim"),
    pytest.param(at(READINGS, attrs=("station",)), id="sparse-dimension-only"),
    pytest.param(at(READINGS, condition="temp > 30 and station == 'A'"), id="sparse-condition"),
    pytest.param(at(READINGS, condition='temp > 30 and station == "A"'), id="sparse-dquotes"),
    pytest.param(at(READINGS, condition="note == 'naïve'"), id="sparse-condition-on-string"),
    pytest.param(at(READINGS, condition="temp > 1000"), id="sparse-condition-matches-nothing"),
    pytest.param(at(READINGS, [("Q", "Z")]), id="sparse-empty-range"),
    pytest.param(at(POINTS, [(-10.5, 20.25)]), id="float-range"),
    pytest.param(at(POINTS, [[(-100, -50), (50, 100)], (0.0, 100.0)]), id="float-int-bounds"),
    pytest.param(at(POINTS), id="float-whole-domain-with-duplicates"),
    pytest.param(at(POINTS, layout="G", condition="v >= 25"), id="float-hilbert-condition"),
    pytest.param(at(WIDE), id="wide-every-attribute"),
    pytest.param(at(WIDE, attrs=("f64",)), id="wide-one"),
    pytest.param(at(WIDE, [(2, 7)], attrs=("label", "i8")), id="wide-two-reordered"),
    pytest.param(at(WIDE, attrs=("u16", "f32", "i")), id="wide-with-dimension"),
]


@pytest.mark.parametrize("read", CASES)
def test_read_matches_local(client: Client, data_root: Path, read: ArrayRead) -> None:
    got = client.apply(
        read.uri, dict, ranges=read.ranges, attrs=read.attrs, layout=read.layout,
        condition=read.condition,
    )  # fmt: skip
    assert_same(got, dict(local_read(data_root, read)))


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(at(DENSE), id="dense-row-major"),
        pytest.param(at(DENSE, [[(15, 17), (2, 3)], [(-5, -3), (5, 9)]]), id="dense-multi"),
        pytest.param(at(DENSE, [(2, 7)], condition="b > 3"), id="dense-condition"),
        pytest.param(at(DENSE, [(5, 5)], layout="F"), id="dense-col-major-one-row"),
        pytest.param(at(DAILY, [(D("2024-02-10"), D("2024-09-05"))]), id="dates"),
        pytest.param(at(READINGS), id="sparse-whole"),
        pytest.param(at(READINGS, condition="temp > 30 or station == 'B'"), id="sparse-cond"),
        pytest.param(at(WIDE, attrs=("label", "f64")), id="dense-strings"),
        pytest.param(at(DENSE, [[(0, 2), (7, 9)], [(-5, 0), (5, 9)]], layout="F"), id="col-multi"),
        pytest.param(at(EVENTS), id="sparse-batches"),
        pytest.param(at(EVENTS, [[(0, 999_999), (5_000_000, 8_000_000)]]), id="sparse-ranges"),
        pytest.param(at(EVENTS, layout="C", condition="tag == 'e5'"), id="sparse-batches-cond"),
        pytest.param(at(EVENTS, condition="v > 1300000"), id="sparse-only-the-last-cells"),
        pytest.param(at(EVENTS, layout="G", condition="v > 1300000"), id="sparse-last-global"),
        pytest.param(at(EVENTS, layout="C", condition="v > 1300000"), id="sparse-last-row-major"),
        pytest.param(at(EVENTS, condition="v < 0"), id="sparse-no-cells"),
    ],
)
def test_block_size_does_not_change_results(
    small_blocks: Client, data_root: Path, read: ArrayRead
) -> None:
    assert_same(small_blocks.apply(read, dict), dict(local_read(data_root, read)))


@pytest.mark.parametrize(
    ("read", "fn"),
    [
        pytest.param(at(DENSE, [(0, 9)]), lambda d: d["a"].mean(axis=1), id="dense-mean"),
        pytest.param(at(DENSE, layout="F"), lambda d: d["b"].cumsum(axis=0)[-1], id="col-major"),
        pytest.param(
            at(READINGS, [("A", "C")]),
            lambda d: np.array([d["temp"][d["station"] == s].sum() for s in (b"A", b"B", b"C")]),
            id="sparse-per-station",
        ),
        pytest.param(at(DAILY), lambda d: np.diff(d["temp"])[::30], id="dates-diff"),
    ],
)
def test_numpy_function_matches_local(
    client: Client, data_root: Path, read: ArrayRead, fn: Callable[[Columns], np.ndarray]
) -> None:
    np.testing.assert_array_equal(
        client.apply(read, fn), fn(local_read(data_root, read)), strict=True
    )


def test_extra_arguments_follow_the_array(client: Client, data_root: Path) -> None:
    def scaled(d: Columns, factor: float, *, shift: float) -> np.ndarray:
        return d["a"] * factor + shift

    read = at(DENSE, [(1, 2), (0, 1)])
    got = client.apply(read, scaled, 3.0, shift=-1.0)
    want = scaled(local_read(data_root, read), 3.0, shift=-1.0)
    np.testing.assert_array_equal(got, want, strict=True)


def test_null_strings_arrive_as_a_local_read_gives_them(client: Client, data_root: Path) -> None:
    read = at(READINGS, attrs=("k", "note"))
    got, local = client.apply(read, dict), local_read(data_root, read)
    nulls = got["k"] % 48 == 0  # the cells written with note=None: every third, k = 16 * i
    assert nulls.sum() == NULL_NOTES
    assert got["note"][nulls].tolist() == local["note"][local["k"] % 48 == 0].tolist()
    assert got["note"][nulls].tolist() == [""] * NULL_NOTES  # tiledb-py reads a null as ""
    assert "naïve" in got["note"].tolist()


@pytest.mark.parametrize(
    ("read", "keys"),
    [
        (at(DENSE, [(0, 3)]), ["a", "b"]),
        (at(DENSE, [(0, 3)], layout="F"), ["a", "b"]),
        (at(READINGS), ["station", "k", "temp", "note"]),  # dimensions first, as tiledb-py
        (at(WIDE, attrs=("label", "i", "f32")), ["i", "f32", "label"]),  # schema order
        (at(READINGS, condition="temp > 1000"), ["station", "k", "temp", "note"]),
    ],
    ids=["dense", "col-major", "sparse", "selection", "no-rows"],
)
def test_udf_gets_an_ordered_dict_of_read_only_views(
    client: Client, data_root: Path, read: ArrayRead, keys: list[str]
) -> None:
    def inspect(d: Columns) -> dict[str, Any]:
        return {
            "type": type(d).__name__,
            "keys": list(d),
            "writeable": [bool(v.flags.writeable) for v in d.values() if v.dtype != object],
        }

    got, local = client.apply(read, inspect), local_read(data_root, read)
    assert got["type"] == "OrderedDict" == type(local).__name__
    assert got["keys"] == keys == list(local)
    assert got["writeable"] == [False] * sum(v.dtype != object for v in local.values())


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["a"].__setitem__((0, 0), 1.0),
        lambda d: setattr(d["a"].flags, "writeable", True),
        lambda d: d["b"].ravel().__setitem__(0, 1),
    ],
    ids=["assign", "make-writeable", "through-a-view"],
)
def test_udf_cannot_change_the_data(client: Client, change: Callable[[Columns], None]) -> None:
    with pytest.raises(UdfError) as caught:
        client.apply(at(DENSE, [(0, 1), (0, 1)]), change)
    assert caught.value.exception_type == "ValueError"


# ---------------------------------------------------------------- several arrays


def pack(*reads: Columns | list[Columns], **named: Columns) -> dict[str, np.ndarray]:
    """Every column of every read as one row (shape (1, ...)), so one dict carries them all."""
    flat: list[tuple[str, Columns]] = []
    for i, item in enumerate(reads):
        items = item if isinstance(item, list) else [item]
        flat += [(f"{i}.{j}", d) for j, d in enumerate(items)]
    flat += list(named.items())
    return {f"{p}.{key}": value[np.newaxis] for p, d in flat for key, value in d.items()}


# Workers cannot import this test module, so its functions (pack) must travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

MULTI = [
    at(DENSE, [(0, 3), [(-5, -4), (8, 9)]], attrs=("a",)),
    at(READINGS, condition="temp > 20", layout="C"),
    at(DAILY, [(T(2024, 3, 1), T(2024, 3, 9))]),
    at(POINTS, [(-50, 50)]),
]


def test_apply_multi_matches_local_reads(client: Client, data_root: Path) -> None:
    got = client.apply_multi(MULTI, pack)
    assert_same(got, pack([local_read(data_root, r) for r in MULTI]))


def test_placeholders_in_args_and_kwargs(client: Client, data_root: Path) -> None:
    dense, readings, daily, points = MULTI
    local = {r.uri: local_read(data_root, r) for r in MULTI}
    got = client.exec(pack, dense, readings, last=daily)
    assert_same(got, pack(local[dense.uri], local[readings.uri], last=local[daily.uri]))
    got = client.apply(points, pack, dense, named=readings)
    assert_same(got, pack(local[points.uri], local[dense.uri], named=local[readings.uri]))


def test_the_same_array_twice(client: Client, data_root: Path) -> None:
    reads = [at(DENSE, [(0, 1)]), at(DENSE, [(18, 19)], layout="F")]
    got = client.apply_multi(reads, pack)
    assert_same(got, pack([local_read(data_root, r) for r in reads]))


def test_async_client_apply(array_server: ServerProcess, data_root: Path) -> None:
    async def main() -> tuple[Any, Any]:
        async with AsyncClient(array_server.address) as aclient:
            return await asyncio.gather(
                aclient.apply(uri(READINGS), dict, ranges=[("C", "E")], attrs=["temp"]),
                aclient.apply_multi(MULTI[:2], pack),
            )

    single, multi = asyncio.run(main())
    assert_same(single, dict(local_read(data_root, at(READINGS, [("C", "E")], attrs=("temp",)))))
    assert_same(multi, pack([local_read(data_root, r) for r in MULTI[:2]]))


# ---------------------------------------------------------------- memory


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _create_big(path: str, rows: int, cols: int, block: int) -> float:
    """A rows x cols float64 array written block by block; returns the sum of its cells."""
    domain = tiledb.Domain(
        tiledb.Dim("r", domain=(0, rows - 1), tile=block // 2, dtype=np.int64),
        tiledb.Dim("c", domain=(0, cols - 1), tile=cols, dtype=np.int64),
    )
    tiledb.Array.create(path, tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("a", "f8")]))
    total = 0.0
    with tiledb.open(path, "w") as array:
        for start in range(0, rows, block):
            # small integers: every partial sum is exact, so any summation order gives the total
            values = ((np.arange(start, start + block)[:, None] + np.arange(cols)) % 1000) * 1.0
            array[start : start + block, :] = values
            total += float(values.sum())
    return total


def test_large_read_keeps_server_memory_flat(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "big"
    (root / "acme").mkdir(parents=True)
    try:
        total = _create_big(str(root / "acme" / "big"), 8192, 8192, block=512)  # 512 MiB
        server = make_server(
            "--data-root", str(root), "--read-block-bytes", str(32 << 20),
            "--array-memory-budget", str(1 << 30),
        )  # fmt: skip
        with Client(server.address) as big:
            warm = big.apply("tiledb://acme/big", lambda d: d["a"].shape, ranges=[(0, 1023)])
            baseline = vm_hwm(server.pid)
            got = big.apply("tiledb://acme/big", lambda d: float(d["a"].sum()))
            growth = vm_hwm(server.pid) - baseline
    finally:
        shutil.rmtree(root)  # pytest keeps old tmp_paths; do not keep 512 MiB of them
    assert warm == [1024, 8192]
    assert got == total
    assert growth < 200 << 20, f"server peak RSS grew by {growth >> 20} MiB for a 512 MiB read"


# ---------------------------------------------------------------- budget


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
    with grpc.insecure_channel(array_server.address) as channel:
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
    _create_wide(str(path))
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
    _create_dense(str(root / "acme" / "inside"))
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


# ---------------------------------------------------------------- ArrayService


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
    with grpc.insecure_channel(array_server.address) as channel:
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


# ---------------------------------------------------------------- regressions
# Bugs these tests found (fixed in 7a041bb); each test failed before the fix.


def test_col_major_read_in_several_blocks_matches_local(
    small_blocks: Client, data_root: Path
) -> None:
    read = at(DENSE, layout="F")  # 15 blocks of one column each
    assert_same(small_blocks.apply(read, dict), dict(local_read(data_root, read)))


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
