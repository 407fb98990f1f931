"""Transport security against real servers: TLS, mutual TLS, plaintext rules, refusals.

Certificates come from the session's ``pki`` fixture (tests/pki_support.py): a CA that signs the
server (SAN IP:127.0.0.1, DNS:localhost) and a client, and an unrelated CA with a client of its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tilefn.client import AsyncClient, Client, UnavailableError
from tilefn.client._channel import make_channel

from conftest import SESSION_TOKEN, ServerProcess
from pki_support import Pair, Pki

SMALL_POOL = ("--ready-workers", "1", "--max-workers", "2")


def _module_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, *flags: str
) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp(name), *SMALL_POOL, *flags)
    yield proc
    assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    flags = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))
    yield from _module_server(tmp_path_factory, "tls", *flags)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    flags = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
             "--tls-client-ca", str(pki.ca.cert))  # fmt: skip
    yield from _module_server(tmp_path_factory, "mtls", *flags)


def _call(address: str, **tls: object) -> object:
    with Client(address, **tls) as client:  # type: ignore[arg-type]
        return client.call(lambda: 1)


# TLS


def test_tls_call(tls_server: ServerProcess, pki: Pki) -> None:
    assert _call(tls_server.address, root_certificates=pki.ca.cert) == 1
    log = tls_server.log_path.read_text()
    assert "serving TLS on 127.0.0.1:" in log and "plaintext" not in log
    assert "PRIVATE KEY" not in log and "BEGIN CERTIFICATE" not in log


def test_tls_async_client_with_pem_bytes(tls_server: ServerProcess, pki: Pki) -> None:
    async def call() -> object:
        async with AsyncClient(tls_server.address, root_certificates=pki.ca.cert.read_bytes()) as c:
            return await c.call(lambda: 1)

    assert asyncio.run(call()) == 1


def test_plaintext_client_to_tls_server_fails(tls_server: ServerProcess) -> None:
    with pytest.raises(UnavailableError):
        _call(tls_server.address)


def test_client_trusting_another_ca_fails(tls_server: ServerProcess, pki: Pki) -> None:
    with pytest.raises(UnavailableError):
        _call(tls_server.address, root_certificates=str(pki.other_ca.cert))


def test_server_name_override(tls_server: ServerProcess, pki: Pki) -> None:
    address = tls_server.address
    assert _call(address, root_certificates=pki.ca.cert, server_name_override="localhost") == 1
    with pytest.raises(UnavailableError):
        _call(address, root_certificates=pki.ca.cert, server_name_override="wrong.example")


def test_env_ca(tls_server: ServerProcess, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILEFN_TLS_CA", str(pki.ca.cert))
    assert _call(tls_server.address) == 1  # the variable alone turns TLS on
    with pytest.raises(UnavailableError):
        _call(tls_server.address, tls=False)  # ... unless TLS is refused explicitly


def test_exec_cli_tls_flags(tls_server: ServerProcess, pki: Pki) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "hello.py"
    command = [sys.executable, "-m", "tilefn.client._cli", "exec", str(example), "--arg", "4",
               "--target", tls_server.address, "--tls-ca", str(pki.ca.cert)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0 1 4 9]"
    result = subprocess.run([*command, "--tls-cert", str(pki.client.cert)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "needs its private key" in result.stderr


def test_loadtest_target_tls(tls_server: ServerProcess, pki: Pki) -> None:
    from loadtest._config import TargetConfig
    from loadtest._target import Target

    async def info() -> dict[str, object]:
        config = TargetConfig(
            address=tls_server.address, tls=True, ca_cert=pki.ca.cert, token=SESSION_TOKEN
        )
        async with Target(config) as target:
            await target.wait_ready(30)
            return await target.server_info()

    assert asyncio.run(info())["version"]


# Mutual TLS


def test_mtls_client_certificate(mtls_server: ServerProcess, pki: Pki) -> None:
    identity = {"client_certificate": pki.client.cert, "client_key": pki.client.key}
    assert _call(mtls_server.address, root_certificates=pki.ca.cert, **identity) == 1
    assert "serving mutual TLS" in mtls_server.log_path.read_text()


def test_mtls_without_client_certificate_fails(mtls_server: ServerProcess, pki: Pki) -> None:
    with pytest.raises(UnavailableError):
        _call(mtls_server.address, root_certificates=pki.ca.cert)


def test_mtls_client_certificate_of_another_ca_fails(mtls_server: ServerProcess, pki: Pki) -> None:
    identity = {"client_certificate": pki.other_client.cert, "client_key": pki.other_client.key}
    with pytest.raises(UnavailableError):
        _call(mtls_server.address, root_certificates=pki.ca.cert, **identity)


def test_mtls_env_identity(
    mtls_server: ServerProcess, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client identity has its own variables (the server reads TILEFN_TLS_CERT/KEY).
    monkeypatch.setenv("TILEFN_TLS_CA", str(pki.ca.cert))
    monkeypatch.setenv("TILEFN_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("TILEFN_CLIENT_KEY", str(pki.client.key))
    assert _call(mtls_server.address) == 1


# Client settings that cannot work


@pytest.mark.parametrize(
    "settings",
    [
        {"client_certificate": b"cert"},
        {"client_key": b"key"},
        {"tls": False, "root_certificates": b"ca"},
        {"server_name_override": "localhost"},
    ],
)
def test_client_settings_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_channel("127.0.0.1:1", aio=False, **settings)  # type: ignore[call-overload]


def test_env_certificate_without_key_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILEFN_CLIENT_CERT", "client.pem")
    monkeypatch.delenv("TILEFN_CLIENT_KEY", raising=False)
    with pytest.raises(ValueError, match="TILEFN_CLIENT_KEY"):
        make_channel("127.0.0.1:1", aio=True, tls=True)
    make_channel("127.0.0.1:1", aio=False).close()  # plaintext: the client identity is unused


# Server start


def _start(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tilefn.server", "--port", "0",
               "--data-root", str(tmp_path / "no-arrays"), *SMALL_POOL, *flags]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _served_by(pair: Pair) -> list[str]:
    return ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]


REFUSALS: list[tuple[Callable[[Pki, Path], list[str]], str]] = [
    (lambda p, _: ["--tls-cert", str(p.server.cert)], "--tls-cert needs --tls-key"),
    (lambda p, _: ["--tls-key", str(p.server.key)], "--tls-key needs --tls-cert"),
    (lambda p, _: ["--tls-client-ca", str(p.ca.cert)], "--tls-client-ca needs --tls-cert"),
    (lambda _, t: ["--host", "0.0.0.0"], "refusing plaintext gRPC on non-loopback host"),
    (lambda _, t: ["--host", "10.1.2.3"], "pass --plaintext"),
    (
        lambda p, t: ["--tls-cert", str(t / "missing.pem"), "--tls-key", str(p.server.key)],
        "missing.pem: No such file",
    ),
    (
        lambda p, t: ["--tls-cert", str(p.server.key), "--tls-key", str(p.server.key)],
        "server.key holds no PEM certificate",
    ),
    (
        lambda p, _: ["--tls-cert", str(p.server.cert), "--tls-key", str(p.client.key)],
        "are not a valid, matching",
    ),
    (
        lambda p, _: [*_served_by(p.server), "--tls-client-ca", str(p.client.key)],
        "client.key holds no PEM CA certificate",
    ),
    (
        lambda p, _: [*_served_by(p.server), "--plaintext"],
        "--plaintext contradicts --tls-cert",
    ),
]


@pytest.mark.parametrize(("flags", "message"), REFUSALS)
def test_start_refused(
    flags: Callable[[Pki, Path], list[str]], message: str, pki: Pki, tmp_path: Path
) -> None:
    result = _start(tmp_path, *flags(pki, tmp_path))
    assert result.returncode != 0
    assert "tilefn: cannot start: " in result.stderr and message in result.stderr, result.stderr
    assert "tilefn serving on" not in result.stdout
    assert "BEGIN" not in result.stderr  # no file contents


def test_non_loopback_plaintext_when_asked(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server("--host", "0.0.0.0", "--plaintext", *SMALL_POOL)
    port = server.address.rpartition(":")[2]
    assert server.address == f"0.0.0.0:{port}"
    assert _call(f"127.0.0.1:{port}") == 1
    log = server.log_path.read_text()
    assert f"WARNING tilefn.server._tls: serving plaintext gRPC on 0.0.0.0:{port}" in log
    assert "configure --tls-cert/--tls-key" in log


def test_loopback_plaintext_warns(server: ServerProcess) -> None:
    assert f"serving plaintext gRPC on {server.address}: " in server.log_path.read_text()
