"""The one place a client channel is made: plaintext, TLS or mutual TLS, sync or asyncio.

Every channel balances calls round-robin over all the addresses its target names (e.g.
``ipv4:10.0.0.1:50051,10.0.0.2:50051`` or a ``dns:///`` name of a headless Service) and
retries a call refused with UNAVAILABLE (a draining replica) on the next one
(``SERVICE_CONFIG``; docs/DEPLOY.md). Channel options given by the caller add to that or, with
their own ``grpc.service_config``, replace it.

TLS material may be PEM bytes or a path (``str`` or ``os.PathLike``). What is not passed is
taken from the environment: ``TILEFN_TLS_CA`` (a CA bundle path; setting it turns TLS on),
``TILEFN_CLIENT_CERT`` and ``TILEFN_CLIENT_KEY`` (a client certificate and its key, used only when
TLS is on). ``tls=None`` means "TLS if any TLS material is given"; ``tls=False`` forces
plaintext and ignores the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import grpc

ChannelOptions = Sequence[tuple[str, Any]]
#: PEM bytes, or the path of a PEM file.
PemSource = bytes | str | os.PathLike[str]

#: The services a client calls: every one is balanced and retried alike.
SERVICES = (
    "tilefn.v1.UdfService",
    "tilefn.v1.GraphService",
    "tilefn.v1.ArrayService",
    "tilefn.v1.RegistryService",
    "tilefn.v1.ServerInfoService",
    "tilefn.v1.AdminService",
)
#: Round robin over the target's addresses, and up to 4 attempts of a call that failed with
#: UNAVAILABLE before the server sent anything back: a replica that refused it while draining
#: or without workers, or one that went away. A call already answering (a stream that sent
#: its first message) is never repeated. No client-side health checks: a lone server that is
#: NOT_SERVING would fail calls in the client, without the server's reason.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": name} for name in SERVICES],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
BALANCING_OPTIONS: ChannelOptions = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
)

CA_ENV = "TILEFN_TLS_CA"
CERT_ENV = "TILEFN_CLIENT_CERT"
KEY_ENV = "TILEFN_CLIENT_KEY"


@overload
def make_channel(
    target: str,
    *,
    aio: Literal[False],
    channel_options: ChannelOptions = (),
    tls: bool | None = None,
    root_certificates: PemSource | None = None,
    client_certificate: PemSource | None = None,
    client_key: PemSource | None = None,
    server_name_override: str | None = None,
) -> grpc.Channel: ...


@overload
def make_channel(
    target: str,
    *,
    aio: Literal[True],
    channel_options: ChannelOptions = (),
    tls: bool | None = None,
    root_certificates: PemSource | None = None,
    client_certificate: PemSource | None = None,
    client_key: PemSource | None = None,
    server_name_override: str | None = None,
) -> grpc.aio.Channel: ...


def make_channel(
    target: str,
    *,
    aio: bool,
    channel_options: ChannelOptions = (),
    tls: bool | None = None,
    root_certificates: PemSource | None = None,
    client_certificate: PemSource | None = None,
    client_key: PemSource | None = None,
    server_name_override: str | None = None,
) -> grpc.Channel | grpc.aio.Channel:
    """A channel to ``target``; TLS when asked for or when TLS material is given.

    ``root_certificates``: the CAs to trust (None: ``TILEFN_TLS_CA``, else the system roots).
    ``client_certificate`` and ``client_key``: a client identity for servers that require
    mutual TLS; one without the other is a ValueError. ``server_name_override``: the name the
    server certificate is checked against instead of the target's host (tests, development).
    """
    given = dict(channel_options)
    options = [(k, v) for k, v in BALANCING_OPTIONS if k not in given] + list(channel_options)
    credentials = _credentials(tls, root_certificates, client_certificate, client_key)
    if credentials is None:
        if server_name_override:
            raise ValueError("server_name_override needs TLS")
        if aio:
            return grpc.aio.insecure_channel(target, options)
        return grpc.insecure_channel(target, options)
    if server_name_override:
        options.append(("grpc.ssl_target_name_override", server_name_override))
    if aio:
        return grpc.aio.secure_channel(target, credentials, options)
    return grpc.secure_channel(target, credentials, options)


def _credentials(
    tls: bool | None,
    roots: PemSource | None,
    cert: PemSource | None,
    key: PemSource | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext (explicit arguments win over the environment)."""
    if tls is False:
        if roots is not None or cert is not None or key is not None:
            raise ValueError("tls=False contradicts the TLS certificates given")
        return None
    roots = roots if roots is not None else os.environ.get(CA_ENV) or None
    if not (tls or roots is not None or cert is not None or key is not None):
        return None
    if cert is None and key is None:
        cert, key = os.environ.get(CERT_ENV) or None, os.environ.get(KEY_ENV) or None
    if (cert is None) != (key is None):
        raise ValueError(
            "a client certificate needs its private key and vice versa "
            f"(client_certificate/client_key, or {CERT_ENV}/{KEY_ENV})"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(roots), private_key=_pem(key), certificate_chain=_pem(cert)
    )


def _pem(source: PemSource | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()
