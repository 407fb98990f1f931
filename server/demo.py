"""Create the demo arrays (once): ``python -m tilefn.server.demo --data-root data``.

- ``tiledb://demo/temperature``: dense 2-D float64, ``day`` (0..364) x ``station`` (0..99),
  attribute ``temp``.
- ``tiledb://demo/readings``: sparse, string dimension ``station`` x datetime dimension ``time``,
  attributes ``temp`` (float32) and nullable variable-length ``note``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tiledb

DENSE = "demo/temperature"
SPARSE = "demo/readings"


def create(root: Path) -> list[str]:
    """Create whichever demo arrays are missing under root; return the ones created."""
    created = []
    for name, make in ((DENSE, _dense), (SPARSE, _sparse)):
        path = root / name
        if tiledb.object_type(str(path)) != "array":
            path.parent.mkdir(parents=True, exist_ok=True)
            make(str(path))
            created.append(f"tiledb://{name}")
    return created


def _dense(uri: str) -> None:
    domain = tiledb.Domain(
        tiledb.Dim("day", domain=(0, 364), tile=73, dtype=np.int32),
        tiledb.Dim("station", domain=(0, 99), tile=100, dtype=np.int32),
    )
    tiledb.Array.create(
        uri, tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("temp", dtype=np.float64)])
    )
    day = np.arange(365)[:, None]
    station = np.arange(100)[None, :]
    temp = 10 + 12 * np.sin(2 * np.pi * (day - 100) / 365) + (station % 10) * 0.5
    with tiledb.open(uri, "w") as array:
        array[:] = {"temp": temp}


def _sparse(uri: str) -> None:
    start, end = (
        np.datetime64("2026-01-01T00:00:00", "s"),
        np.datetime64("2026-12-31T23:59:59", "s"),
    )
    domain = tiledb.Domain(
        tiledb.Dim("station", dtype="ascii"),
        tiledb.Dim(
            "time", domain=(start, end), tile=np.timedelta64(86400, "s"), dtype="datetime64[s]"
        ),
    )
    attrs = [
        tiledb.Attr("temp", dtype=np.float32),
        tiledb.Attr("note", dtype=str, var=True, nullable=True),
    ]
    tiledb.Array.create(uri, tiledb.ArraySchema(domain=domain, attrs=attrs, sparse=True))
    rng = np.random.default_rng(7)
    stations = np.repeat(np.array(["A", "B", "C", "D"]), 250)
    times = start + rng.integers(0, 365 * 86400, size=1000).astype("timedelta64[s]")
    notes = np.array([None if i % 3 else f"check {i}" for i in range(1000)], dtype=object)
    with tiledb.open(uri, "w") as array:
        array[stations, times] = {"temp": rng.normal(15, 8, 1000).astype(np.float32), "note": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data", type=Path)
    for name in create(parser.parse_args().data_root):
        print(f"created {name}")


if __name__ == "__main__":
    main()
