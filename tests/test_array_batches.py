"""Batched array reads: a UDF iterates blocks fetched on demand, past the memory budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiledb

from tilefn.client import ArrayRead, Client, ResourceExhaustedError, UdfError

from conftest import ServerProcess

ROWS, COLS = 512, 512  # 2 MiB of float64


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "t").mkdir()
    dense = str(root / "t" / "dense")
    domain = tiledb.Domain(
        tiledb.Dim("r", domain=(0, ROWS - 1), tile=64, dtype=np.int64),
        tiledb.Dim("c", domain=(0, COLS - 1), tile=COLS, dtype=np.int64),
    )
    tiledb.Array.create(
        dense, tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("v", np.float64)])
    )
    with tiledb.open(dense, "w") as array:
        array[:] = {"v": np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)}
    sparse = str(root / "t" / "sparse")
    domain = tiledb.Domain(tiledb.Dim("k", domain=(0, 10**6), tile=1000, dtype=np.int64))
    schema = tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("x", np.int32)], sparse=True)
    tiledb.Array.create(sparse, schema)
    keys = np.arange(0, 10**6, 7, dtype=np.int64)
    with tiledb.open(sparse, "w") as array:
        array[keys] = {"x": (keys % 1000).astype(np.int32)}
    return root


@pytest.fixture
def small_budget(make_server: Callable[..., ServerProcess], data_root: Path) -> Iterator[Client]:
    """A server whose budget (1 MiB) is smaller than the dense array (2 MiB)."""
    server = make_server(
        "--data-root", str(data_root), "--array-memory-budget", str(1 << 20),
        "--read-block-bytes", str(256 << 10),
    )  # fmt: skip
    with Client(server.address) as client:
        yield client


def block_sums(blocks: Iterator[dict[str, Any]]) -> list[tuple[list[int], float]]:
    return [(list(b["v"].shape), float(b["v"].sum())) for b in blocks]


def test_whole_read_over_budget_is_refused(small_budget: Client) -> None:
    with pytest.raises(ResourceExhaustedError) as caught:
        small_budget.apply("tiledb://t/dense", lambda d: float(d["v"].sum()))
    assert caught.value.reason == "ERROR_REASON_ARRAY_READ_TOO_LARGE"
    assert caught.value.metadata["budget_bytes"] == str(1 << 20)


def test_batched_dense_read_streams_blocks_in_order(small_budget: Client, data_root: Path) -> None:
    blocks = small_budget.apply(ArrayRead("tiledb://t/dense", batched=True), block_sums)
    assert len(blocks) > 4
    assert all(shape[1] == COLS for shape, _ in blocks)
    assert sum(shape[0] for shape, _ in blocks) == ROWS
    with tiledb.open(str(data_root / "t" / "dense")) as array:
        local = array[:]["v"]
    row = 0
    for shape, total in blocks:
        assert total == float(local[row : row + shape[0]].sum())
        row += shape[0]


def test_batched_sparse_read_matches_local(small_budget: Client, data_root: Path) -> None:
    def concat(blocks: Iterator[dict[str, Any]]) -> dict[str, np.ndarray]:
        parts = [dict(b) for b in blocks]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    got = small_budget.apply(ArrayRead("tiledb://t/sparse", [(100, 500_000)], batched=True), concat)
    with tiledb.open(str(data_root / "t" / "sparse")) as array:
        local = array.query(order="U").multi_index[100:500_000]
    order = np.argsort(got["k"])
    np.testing.assert_array_equal(got["k"][order], np.sort(local["k"]))
    np.testing.assert_array_equal(got["x"][order], local["x"][np.argsort(local["k"])])


def test_stopping_early_and_failing_midway(small_budget: Client) -> None:
    first = small_budget.apply(
        ArrayRead("tiledb://t/dense", batched=True), lambda bs: list(next(iter(bs))["v"].shape)
    )
    assert first[1] == COLS

    def fail_on_third(blocks: Iterator[dict[str, Any]]) -> None:
        for i, _ in enumerate(blocks):
            if i == 2:
                raise RuntimeError("third block")

    with pytest.raises(UdfError, match="third block"):
        small_budget.apply(ArrayRead("tiledb://t/dense", batched=True), fail_on_third)
    assert small_budget.exec(lambda: 1) == 1


def test_batched_and_whole_inputs_together(small_budget: Client) -> None:
    def f(blocks: Iterator[dict[str, Any]], corner: dict[str, np.ndarray]) -> list[float]:
        return [sum(float(b["v"][0, 0]) for b in blocks), float(corner["v"].sum())]

    got = small_budget.exec(
        f,
        ArrayRead("tiledb://t/dense", [(0, 127), None], batched=True),
        ArrayRead("tiledb://t/dense", [(0, 1), (0, 1)]),
    )
    assert got[1] == 0 + 1 + COLS + COLS + 1
    assert got[0] > 0
