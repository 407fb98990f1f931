"""Server configuration: one frozen dataclass, filled from flags or TILEFN_* variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

from tilefn.sandbox import PoolConfig

MIB = 1 << 20
#: Bounds of ExecutionOptions.max_chunk_bytes: every response fits gRPC's default 4 MiB limit.
MIN_CHUNK_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 4 * MIB - 1024
DEFAULT_CHUNK_BYTES = MIB


class ConfigError(Exception):
    """The settings cannot work together (or name files that cannot be read); nothing started."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to know at start."""

    #: Interface to listen on. Loopback by default: exposing tilefn is a deliberate act.
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one (printed at start).
    port: int = 50051
    #: PEM certificate chain the server presents; with ``tls_key``, the server speaks only TLS.
    tls_cert: str = ""
    #: PEM private key of ``tls_cert`` (unencrypted).
    tls_key: str = ""
    #: PEM bundle of the CAs that sign client certificates; set: every client must present
    #: one (mutual TLS). Needs ``tls_cert``.
    tls_client_ca: str = ""
    #: Serve plaintext gRPC on a non-loopback host (without a certificate); loopback hosts may
    #: always serve plaintext. Both log a warning.
    plaintext: bool = False
    #: Largest ExecuteUdf request (UDF plus arguments) accepted, in bytes.
    max_request_bytes: int = 64 * MIB
    #: UDF run time when the request sets no timeout, in seconds.
    default_timeout: float = 300.0
    #: Longest UDF run time a request may ask for, in seconds.
    max_timeout: float = 3600.0
    #: The most bytes of Arrow IPC one result may have (requests may ask for less).
    max_result_bytes: int = 64 << 30
    #: Bytes of a UDF's printed output kept (the last ones) when a request sets no limit.
    default_log_bytes: int = 64 * 1024
    #: The most printed output a request may ask to keep, in bytes.
    max_log_bytes: int = 1 * MIB
    #: The largest result CallUdf (unary) returns in one message, in bytes; leaves room for
    #: logs and the summary under gRPC's common 4 MiB message limit.
    max_unary_result_bytes: int = 3 * MIB
    #: Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
    drain_grace: float = 30.0
    #: Seconds after which the server asks a client connection to reconnect (HTTP/2 GOAWAY;
    #: calls in flight finish, for up to ``max_timeout`` more), so that clients balancing over
    #: a DNS name re-resolve it and spread to replicas added since; 0: never.
    max_connection_age: float = 0.0
    #: Where arrays live: tiledb://ns/name is <data_root>/ns/name. A folder or any TileDB URI.
    data_root: str = "data"
    #: Accept raw storage URIs from clients (local paths must still be inside data_root).
    allow_raw_uris: bool = False
    #: Array bytes one execution may hand to its worker; larger reads get RESOURCE_EXHAUSTED.
    array_memory_budget: int = 1 << 30
    #: Bytes the server reads from TileDB at a time (its memory per read stays near this).
    read_block_bytes: int = 64 * MIB
    #: A TileDB config file (key value lines) for storage credentials and tuning.
    tiledb_config: str = ""
    #: The state database (tokens, namespaces, shares, registered UDFs, tasks, audit), migrated
    #: at start: a SQLite file (several servers on one machine may share it), or a
    #: ``postgresql://user@host:port/dbname`` URI (replicas on several hosts share it; its
    #: password comes from TILEFN_STORE_PASSWORD or ``store_password_file``, never the URI).
    store: str = "state/tilefn.sqlite3"
    #: A file whose first line is the PostgreSQL store's password.
    store_password_file: str = ""
    #: Where stored results are kept (Arrow IPC files, one folder per namespace): a folder
    #: (shared by replicas on several hosts, or not), ``s3://bucket/prefix`` or
    #: ``gs://bucket/prefix``; empty means a "results" folder next to the store.
    results_dir: str = ""
    #: How long a stored result is kept when the request does not say, in seconds.
    result_ttl: float = 86400.0
    #: The longest time-to-live a request may ask for, in seconds.
    max_result_ttl: float = 30 * 86400.0
    #: Bytes of stored results one namespace may keep.
    result_quota_bytes: int = 10 << 30
    #: Seconds a task's record is kept after it ended (unless its result is still stored).
    task_retention: float = 7 * 86400.0
    #: Require a bearer token on every call. Off (``--no-auth``) only for isolated development:
    #: every caller is then an anonymous admin.
    auth: bool = True
    #: Executions running at once (each holds a worker); further calls queue. 0: the pool's
    #: ``max_workers``, the most it can usefully be (see docs/architecture.md, admission).
    max_running: int = 0
    #: Executions one namespace may run at once; 0: ``max_running``. No cap of its own by
    #: default, so one busy tenant can use every idle worker; fairness comes from handing each
    #: freed slot to the waiting namespace served least recently. Lower it to keep workers
    #: free for other tenants when UDFs run long.
    max_running_per_namespace: int = 0
    #: Calls waiting for a slot, over all namespaces; past it calls get QUEUE_FULL at once.
    max_queued: int = 256
    #: Calls one namespace may have waiting; past it its calls get QUEUE_FULL at once.
    max_queued_per_namespace: int = 64
    #: Worker pool settings.
    pool: PoolConfig = field(default_factory=PoolConfig)
    #: Logging level name.
    log_level: str = "INFO"
    #: "text" (one readable line per record) or "json" (one JSON object per line, with the
    #: task id and namespace of the execution a line belongs to).
    log_format: str = "text"
    #: Port of the Prometheus endpoint (``GET /metrics``); 0 serves no metrics, -1 picks a free
    #: port (printed at start).
    metrics_port: int = 0
    #: Interface of the metrics endpoint; empty: the same as ``host``.
    metrics_host: str = ""


_SERVER_FLAGS = (
    "store",
    "store_password_file",
    "auth",
    "results_dir",
    "result_ttl",
    "max_result_ttl",
    "result_quota_bytes",
    "task_retention",
    "data_root",
    "allow_raw_uris",
    "array_memory_budget",
    "read_block_bytes",
    "tiledb_config",
    "host",
    "port",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "plaintext",
    "max_request_bytes",
    "max_result_bytes",
    "default_log_bytes",
    "max_log_bytes",
    "max_unary_result_bytes",
    "default_timeout",
    "max_timeout",
    "drain_grace",
    "max_connection_age",
    "max_running",
    "max_running_per_namespace",
    "max_queued",
    "max_queued_per_namespace",
    "log_level",
    "log_format",
    "metrics_port",
    "metrics_host",
)
_POOL_FLAGS = (
    "ready_workers",
    "max_workers",
    "max_tasks_per_worker",
    "worker_memory_bytes",
    "sandbox",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; each defaults to TILEFN_<NAME> or the built-in default."""
    defaults = {f.name: f.default for f in fields(ServerConfig)}
    pool_defaults = {f.name: f.default for f in fields(PoolConfig)}
    for name in _SERVER_FLAGS + _POOL_FLAGS:
        default: Any = defaults[name] if name in defaults else pool_defaults[name]
        env = os.environ.get(f"TILEFN_{name.upper()}")
        kind = type(default)
        flag = f"--{name.replace('_', '-')}"
        help_text = f"(env TILEFN_{name.upper()}, default {default})"
        if kind is bool:
            value = env.lower() in ("1", "true", "yes") if env is not None else default
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=value, help=help_text
            )
            continue
        parser.add_argument(
            flag, type=kind, default=kind(env) if env is not None else default, help=help_text
        )


def from_arguments(options: argparse.Namespace) -> ServerConfig:
    """Build the config from parsed flags."""
    pool = PoolConfig(**{name: getattr(options, name) for name in _POOL_FLAGS})
    return ServerConfig(pool=pool, **{name: getattr(options, name) for name in _SERVER_FLAGS})
