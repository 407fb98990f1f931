"""A small PKI for the tests that need TLS, made once per session with the ``openssl`` command.

A pytest plugin (``pytest_plugins`` in conftest.py): the ``pki`` fixture holds a CA that signs
the server (SAN IP:127.0.0.1, DNS:localhost) and a client, and an unrelated CA with a client of
its own. Files are named ``<name>.pem`` and ``<name>.key`` in one folder (``ca.pem``,
``client.pem``, ``client.key``, ...), so documented commands can run there as written.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_EXT = "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    server: Pair
    client: Pair
    other_ca: Pair
    other_client: Pair


def _openssl(folder: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _new_key_args(name: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-subj", f"/CN={name}"]  # fmt: skip


def _ca(folder: Path, name: str) -> Pair:
    _openssl(
        folder, "req", "-x509", *_new_key_args(name), "-out", f"{name}.pem", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return Pair(folder / f"{name}.pem", folder / f"{name}.key")


def _issue(folder: Path, name: str, ca: Pair, extensions: str, serial: int) -> Pair:
    (folder / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions
    )
    _openssl(folder, "req", "-new", *_new_key_args(name), "-out", f"{name}.csr")
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
    )  # fmt: skip
    return Pair(folder / f"{name}.pem", folder / f"{name}.key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = _ca(folder, "ca"), _ca(folder, "other-ca")
    return Pki(
        ca=ca,
        server=_issue(folder, "server", ca, SERVER_EXT, 1),
        client=_issue(folder, "client", ca, CLIENT_EXT, 2),
        other_ca=other_ca,
        other_client=_issue(folder, "other-client", other_ca, CLIENT_EXT, 3),
    )
