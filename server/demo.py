"""Create the demo arrays and a development token (once), for ``make run``::

    python -m tilefn.server.demo --data-root data --store state/tilefn.sqlite3 \
        --token-file state/dev-token

- ``tiledb://demo/temperature``: dense 2-D float64, ``day`` (0..364) x ``station`` (0..99),
  attribute ``temp``.
- ``tiledb://demo/readings``: sparse, string dimension ``station`` x datetime dimension ``time``,
  attributes ``temp`` (float32) and nullable variable-length ``note``.
- with ``--token-file``: user ``demo`` (who owns the arrays: they live in its namespace) and a
  token for it with every scope but admin, its secret saved in that file (mode 0600) and
  printed. A later run reuses the saved token while the store still accepts it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tiledb

from ._admin import DEFAULT_TOKEN_SECONDS, create_namespace, create_token
from ._config import ServerConfig
from ._sqlite import SqliteStore
from ._store import Store

DENSE = "demo/temperature"
SPARSE = "demo/readings"
DEV_USER = "demo"
DEV_SCOPES = ("run", "read_arrays", "manage_udfs", "manage_arrays")
#: A saved token that expires sooner than this is replaced (a day of use left at least).
MIN_REMAINING_SECONDS = 86400.0


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


def dev_token(store_path: Path, token_file: Path) -> tuple[str, bool]:
    """The development token of user ``demo``: the one saved in ``token_file`` while the store
    accepts it, else a new one (saved there). Returns (secret, whether it is new)."""
    store = SqliteStore(store_path)
    try:
        saved = token_file.read_text().strip() if token_file.exists() else ""
        if saved and _usable(store, saved):
            return saved, False
        if store.namespace(DEV_USER) is None:
            create_namespace(store, DEV_USER, "user")
        secret, _ = create_token(
            store, DEV_USER, DEV_SCOPES, DEFAULT_TOKEN_SECONDS, "development token of make run"
        )
    finally:
        store.close()
    _write_private(token_file, secret + "\n")
    return secret, True


def _usable(store: Store, secret: str) -> bool:
    record = store.token_by_secret(secret)
    return (
        record is not None
        and record.namespace == DEV_USER
        and record.revoked_at is None
        and record.expires_at > time.time() + MIN_REMAINING_SECONDS
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data", type=Path)
    parser.add_argument("--store", default=ServerConfig.store, type=Path)
    parser.add_argument(
        "--token-file", type=Path, help="create or reuse a token of user demo, saved here"
    )
    options = parser.parse_args()
    for name in create(options.data_root):
        print(f"created {name}")
    if options.token_file is not None:
        secret, new = dev_token(options.store, options.token_file)
        state = "new" if new else "saved"
        print(f"development token ({state}; user {DEV_USER}; {', '.join(DEV_SCOPES)}):")
        print(f"  {secret}")


if __name__ == "__main__":
    main()
