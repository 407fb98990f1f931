"""The ``tilefn`` command: ``tilefn serve`` runs a server, ``tilefn exec`` runs a UDF on one."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._client import Client
from ._exceptions import TilefnError
from ._request import Options, Source

DEFAULT_TARGET = os.environ.get("TILEFN_TARGET", "127.0.0.1:50051")
ADMIN_GROUPS = ("token", "namespace", "member")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tilefn`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        # The server is a separate program; exec it rather than importing server code here.
        os.execv(sys.executable, [sys.executable, "-m", "tilefn.server", *argv[1:]])
    if argv[:1] and argv[0] in ADMIN_GROUPS:  # administration of the local state database
        os.execv(sys.executable, [sys.executable, "-m", "tilefn.server.admin", *argv])
    options = _parser().parse_args(argv)
    sys.exit(options.run(options))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tilefn", description="Run UDFs next to TileDB arrays.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run a server (flags: tilefn serve --help)")
    for group in ADMIN_GROUPS:
        commands.add_parser(
            group, help=f"administer {group}s in the local store (tilefn {group} -h)"
        )
    run = commands.add_parser("exec", help="run a Python-source UDF and print its result")
    run.add_argument("source", help="a .py file defining the UDF, or - for standard input")
    run.add_argument(
        "-e", "--entry-point", default="", help="function to call (default: the only one)"
    )
    run.add_argument(
        "-a",
        "--arg",
        action="append",
        default=[],
        metavar="JSON",
        help="a positional argument as JSON (repeatable)",
    )
    run.add_argument(
        "-k",
        "--kwarg",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a keyword argument as JSON (repeatable)",
    )
    run.add_argument(
        "-t", "--target", default=DEFAULT_TARGET, help=f"server (default {DEFAULT_TARGET})"
    )
    run.add_argument("--timeout", type=float, default=None, help="seconds the UDF may run")
    tls = run.add_argument_group("transport security")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="connect with TLS (implied by the other flags here)",
    )
    tls.add_argument("--tls-ca", type=Path, help="PEM CA bundle to trust (env TILEFN_TLS_CA)")
    tls.add_argument(
        "--tls-cert", type=Path, help="PEM client certificate, mutual TLS (env TILEFN_CLIENT_CERT)"
    )
    tls.add_argument("--tls-key", type=Path, help="its PEM private key (env TILEFN_CLIENT_KEY)")
    run.add_argument("--ipc-out", type=Path, help="write the raw Arrow IPC stream to this file")
    run.set_defaults(run=_exec)
    return parser


def _exec(options: argparse.Namespace) -> int:
    text = sys.stdin.read() if options.source == "-" else Path(options.source).read_text()
    try:
        args = [json.loads(a) for a in options.arg]
        kwargs = dict(_kwarg(k) for k in options.kwarg)
    except ValueError as exc:
        print(f"tilefn: bad argument: {exc}", file=sys.stderr)
        return 2
    udf = Source(text, options.entry_point)
    try:
        client = Client(
            options.target,
            options=Options(timeout=options.timeout),
            tls=options.tls,
            root_certificates=options.tls_ca,
            client_certificate=options.tls_cert,
            client_key=options.tls_key,
        )
    except (ValueError, OSError) as exc:
        print(f"tilefn: bad TLS settings: {exc}", file=sys.stderr)
        return 2
    with client:
        try:
            stream = client.stream(udf, *args, **kwargs)
            batches = list(stream)
        except TilefnError as exc:
            sys.stderr.write(exc.logs)
            print(f"tilefn: {exc}", file=sys.stderr)
            return 1
    if stream.logs is not None:  # what the UDF printed goes to stderr, the result to stdout
        sys.stderr.write(stream.logs.text)
    assert stream.schema is not None
    if options.ipc_out:
        with (
            pa.OSFile(str(options.ipc_out), "wb") as sink,
            pa.ipc.new_stream(sink, stream.schema) as w,
        ):
            for batch in batches:
                w.write_batch(batch)
    _print(stream.decode(batches))
    return 0


def _kwarg(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"{text!r} is not NAME=JSON")
    return name, json.loads(value)


def _print(value: Any) -> None:
    if isinstance(value, np.ndarray):
        print(np.array2string(value, threshold=1000))
    elif isinstance(value, pa.Table | pa.RecordBatch):
        print(value.to_string(preview_cols=20))
    elif isinstance(value, dict | list) and _jsonable(value):
        print(json.dumps(value, indent=2))
    else:
        print(value)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


if __name__ == "__main__":
    main()
