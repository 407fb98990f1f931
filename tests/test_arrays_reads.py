"""Array reads end to end: a real server reads real TileDB arrays; results equal local reads.

Every equivalence test runs the same function on the service's read and on a local tiledb-py
read with the same ranges, attributes, layout and condition, and compares every column's values,
dtype, shape and key order. The arrays, their server and the helpers are in arrays_support.py.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiledb

from tilefn.client import ArrayRead, AsyncClient, Client, UdfError

from arrays_support import (
    DAILY,
    DENSE,
    EVENTS,
    NULL_NOTES,
    POINTS,
    READINGS,
    WIDE,
    Columns,
    D,
    T,
    assert_same,
    at,
    local_read,
    uri,
)
from conftest import ServerProcess

pytestmark = pytest.mark.usefixtures("still_serving")


@pytest.fixture
def client(array_client: Client) -> Client:
    """The array server's client (overrides conftest's client of the shared server)."""
    return array_client


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


# ---------------------------------------------------------------- equivalence

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


# Workers cannot import this module: the client sends functions of modules that are not installed,
# such as pack, by value (client/_request.py, _pickled).
def pack(*reads: Columns | list[Columns], **named: Columns) -> dict[str, np.ndarray]:
    """Every column of every read as one row (shape (1, ...)), so one dict carries them all."""
    flat: list[tuple[str, Columns]] = []
    for i, item in enumerate(reads):
        items = item if isinstance(item, list) else [item]
        flat += [(f"{i}.{j}", d) for j, d in enumerate(items)]
    flat += list(named.items())
    return {f"{p}.{key}": value[np.newaxis] for p, d in flat for key, value in d.items()}


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


# ---------------------------------------------------------------- regressions
# Bugs these tests found (fixed in 7a041bb); each test failed before the fix.


def test_col_major_read_in_several_blocks_matches_local(
    small_blocks: Client, data_root: Path
) -> None:
    read = at(DENSE, layout="F")  # 15 blocks of one column each
    assert_same(small_blocks.apply(read, dict), dict(local_read(data_root, read)))
