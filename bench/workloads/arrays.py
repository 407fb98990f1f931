"""Sum over a 512 MiB dense float64 array: tilefn ``apply`` vs tiledb-py + numpy in one process.

The array is ``tiledb://bench/big`` (``<data root>/bench/big``): one int64 dimension ``i`` of
2^26 cells in 8 MiB tiles, one float64 attribute ``a`` holding 0, 1, 2, ..., no filters, written
as one fragment. Both sides read the whole array and sum it; the files are in the page cache for
both (just written, then read by the warmup). Each measurement is one warmup read and one timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._stats import Metrics

NAME = "bench/big"
URI = f"tiledb://{NAME}"
CELLS = 1 << 26  # 512 MiB of float64
TILE = 1 << 20
EXPECTED_SUM = float(CELLS * (CELLS - 1) // 2)


def create(root: Path) -> Path:
    """Write the array under the data root (once) and return its path."""
    import numpy as np
    import tiledb

    path = root / NAME
    if tiledb.object_type(str(path)) == "array":
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    dim = tiledb.Dim("i", domain=(0, CELLS - 1), tile=TILE, dtype=np.int64)
    schema = tiledb.ArraySchema(
        domain=tiledb.Domain(dim), attrs=[tiledb.Attr("a", dtype=np.float64)]
    )
    tiledb.Array.create(str(path), schema)
    with tiledb.open(str(path), "w") as array:
        array[:] = {"a": np.arange(CELLS, dtype=np.float64)}
    return path


def sum_a(data: dict[str, Any]) -> float:
    """The UDF: the sum of attribute ``a``."""
    return float(data["a"].sum())


def _timed(run: Callable[[], float]) -> Metrics:
    run()
    started = time.perf_counter()
    total = run()
    seconds = time.perf_counter() - started
    if total != EXPECTED_SUM:
        raise RuntimeError(f"sum {total} != {EXPECTED_SUM}")
    return {"seconds": seconds, "gb_per_s": CELLS * 8 / seconds / 1e9}


def tilefn(target: str, data_root: Path) -> Metrics:
    from tilefn.client import Client

    with Client(target) as client:
        return _timed(lambda: float(client.apply(URI, sum_a)))


def local(target: str, data_root: Path) -> Metrics:
    import tiledb

    def run() -> float:
        with tiledb.open(str(data_root / NAME)) as array:
            return sum_a(array[:])

    return _timed(run)
