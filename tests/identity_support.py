"""A small world of users, organisations, tokens and arrays for the access-control tests.

- users alice (member of organisation acme), bob, carol; organisation pub;
- arrays alice/private, acme/data, acme/for_bob (shared with bob), pub/open (shared with "*");
- a token per user with every non-admin scope, plus narrower, expired and admin tokens;
- one server over that data root and a store of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tiledb

from tilefn.client import Client
from tilefn.server._admin import create_namespace, create_token
from tilefn.server._sqlite import SqliteStore

from conftest import ServerProcess

ARRAYS = {"alice/private": 1, "acme/data": 2, "acme/for_bob": 3, "pub/open": 4}
USER_SCOPES = ["run", "read_arrays", "manage_udfs", "manage_arrays"]


@dataclass
class World:
    root: Path
    store_path: Path
    server: ServerProcess
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str) -> Client:
        return Client(self.server.address, token=self.tokens[who])

    def restart(self) -> None:
        """Stop the server and start a new one on the same store and data."""
        assert self.server.stop() == 0, self.server.log_path.read_text()
        self.server = start_server(self.root, self.store_path)


def start_server(root: Path, store_path: Path) -> ServerProcess:
    return ServerProcess(root, "--data-root", str(root / "data"), "--store", str(store_path))


def _array(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    domain = tiledb.Domain(tiledb.Dim("i", domain=(0, 3), tile=4, dtype=np.int64))
    schema = tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("v", dtype=np.int64)])
    tiledb.Array.create(str(path), schema)
    with tiledb.open(str(path), "w") as array:
        array[:] = np.full(4, value, dtype=np.int64)


def populate(store: SqliteStore, tokens: dict[str, str]) -> None:
    for user in ("alice", "bob", "carol"):
        create_namespace(store, user, "user")
        tokens[user], _ = create_token(store, user, USER_SCOPES, 3600.0, user)
    for organisation in ("acme", "pub"):
        create_namespace(store, organisation, "organisation")
    store.add_member("acme", "alice")
    store.share_array("acme", "for_bob", "bob", True)
    store.share_array("pub", "open", "*", True)
    tokens["alice_run_only"], _ = create_token(store, "alice", ["run"], 3600.0, "narrow")
    tokens["alice_expired"], _ = create_token(store, "alice", USER_SCOPES, 0.001, "expired")
    tokens["admin"], _ = create_token(store, "carol", ["admin"], 3600.0, "admin")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("identity")
    for name, value in ARRAYS.items():
        _array(root / "data" / name, value)
    store_path = root / "state.sqlite3"
    store = SqliteStore(store_path)
    tokens: dict[str, str] = {}
    try:
        populate(store, tokens)
    finally:
        store.close()
    world = World(root, store_path, start_server(root, store_path), tokens)
    yield world
    assert world.server.stop() == 0, world.server.log_path.read_text()
