"""Servers over the demo data of ``make run``, for the tests of foreign clients (Node, grpcurl).

A pytest plugin (``pytest_plugins`` in conftest.py). Each server has its own data root holding
the demo arrays (``tilefn.server.demo.create``), its own state database and user ``demo``'s
development token (``demo.dev_token``: every scope but admin), exactly what ``make run`` sets
up, so clients call it as a reader of README.md would. ``demo_server`` is plaintext;
``demo_mtls_server`` requires a client certificate signed by the session's CA (``pki``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tiledb

from tilefn.server import demo

from conftest import ServerProcess
from pki_support import Pki

SMALL_POOL = ("--ready-workers", "1", "--max-workers", "2")


@dataclass(frozen=True)
class DemoServer:
    """A running server over the demo arrays, and the token of their owner."""

    server: ServerProcess
    data: Path
    token: str

    @property
    def address(self) -> str:
        return self.server.address

    def temperature(self) -> tiledb.Array:
        """The demo's dense array, opened for a local read."""
        return tiledb.open(str(self.data / demo.DENSE))


def _serve(root: Path, *flags: str) -> Iterator[DemoServer]:
    data, store = root / "data", root / "state.sqlite3"
    demo.create(data)
    token, _ = demo.dev_token(store, root / "dev-token")
    flags = ("--data-root", str(data), "--store", str(store), *SMALL_POOL, *flags)
    server = ServerProcess(root, *flags)
    yield DemoServer(server, data, token)
    assert server.stop() == 0, server.log_path.read_text()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    yield from _serve(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def demo_mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[DemoServer]:
    tls = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
           "--tls-client-ca", str(pki.ca.cert))  # fmt: skip
    yield from _serve(tmp_path_factory.mktemp("demo-mtls"), *tls)


def read_ranges(array: tiledb.Array, *dims: list[tuple[int, int]]) -> np.ndarray:
    """The ``temp`` cells of inclusive ranges per dimension, as tiledb-py reads them."""
    return array.multi_index[tuple(dims)]["temp"]
