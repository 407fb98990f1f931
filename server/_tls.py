"""Transport security: bind the gRPC port with TLS, mutual TLS, or (where allowed) plaintext.

    tls_cert + tls_key                 -> TLS
    tls_cert + tls_key + tls_client_ca -> mutual TLS (clients must present a certificate)
    none, loopback host or --plaintext -> plaintext, with a warning
    anything else                      -> ConfigError: the server does not start

The PEM files are read and checked once, before any worker or gRPC object exists, so a wrong
path or a key that does not match its certificate stops the server with a message naming the
file rather than failing every handshake later. Their contents are never logged.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ._config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class TlsFiles:
    """The PEM bytes the server's credentials are made of."""

    #: Certificate chain, leaf first.
    cert: bytes
    #: Private key of the leaf certificate.
    key: bytes = field(repr=False)
    #: CAs trusted to sign client certificates; None: clients are not asked for one.
    client_ca: bytes | None = None


def load(config: ServerConfig) -> TlsFiles | None:
    """Check the TLS settings and read their files; None when the server may serve plaintext."""
    if bool(config.tls_cert) != bool(config.tls_key):
        given, missing = ("tls-cert", "tls-key") if config.tls_cert else ("tls-key", "tls-cert")
        raise ConfigError(f"--{given} needs --{missing} (the certificate and its private key)")
    if not config.tls_cert:
        if config.tls_client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        if not (config.plaintext or is_loopback(config.host)):
            raise ConfigError(
                f"refusing plaintext gRPC on non-loopback host {config.host!r}: configure "
                "--tls-cert and --tls-key, or pass --plaintext to accept unencrypted traffic"
            )
        return None
    if config.plaintext:
        raise ConfigError("--plaintext contradicts --tls-cert: choose one")
    cert = _read(config.tls_cert, _CERTIFICATE, "certificate")
    key = _read(config.tls_key, _PRIVATE_KEY, "private key")
    _check_pair(config.tls_cert, config.tls_key)
    client_ca = None
    if config.tls_client_ca:
        client_ca = _read(config.tls_client_ca, _CERTIFICATE, "CA certificate")
        _check_ca(config.tls_client_ca, client_ca)
    return TlsFiles(cert, key, client_ca)


def bind(server: grpc.aio.Server, config: ServerConfig, files: TlsFiles | None) -> int:
    """Add the listening port, secure unless ``files`` is None; return the bound port."""
    address = f"{config.host}:{config.port}"
    if files is None:
        port = server.add_insecure_port(address)
        log.warning(
            "serving plaintext gRPC on %s:%d: traffic and tokens are not encrypted; "
            "configure --tls-cert/--tls-key",
            config.host,
            port,
        )
        return port
    credentials = grpc.ssl_server_credentials(
        [(files.key, files.cert)],
        root_certificates=files.client_ca,
        require_client_auth=files.client_ca is not None,
    )
    port = server.add_secure_port(address, credentials)
    mode = "mutual TLS (client certificates required)" if files.client_ca else "TLS"
    log.info("serving %s on %s:%d", mode, config.host, port)
    return port


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (bracketed or not); names are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _read(path: str, marker: bytes, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None
    if marker not in data:
        raise ConfigError(f"{path} holds no PEM {what}")
    return data


def _check_pair(cert: str, key: str) -> None:
    """Parse both files the way a TLS server would; grpc itself only fails at handshake time."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key would ask for a password: answer none, so it fails here.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise ConfigError(
            f"TLS certificate {cert} and private key {key} are not a valid, matching, "
            f"unencrypted PEM pair ({exc.reason or exc})"
        ) from None


def _check_ca(path: str, pem: bytes) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{path} is not a valid PEM CA bundle ({exc})") from None
