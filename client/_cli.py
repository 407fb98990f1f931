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
from ._graph_state import GRAPH_ENDED, NodeInfo
from ._request import Options, Source
from ._tasks import STATUS_NAMES

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
    run.add_argument("--timeout", type=float, default=None, help="seconds the UDF may run")
    run.add_argument("--ipc-out", type=Path, help="write the raw Arrow IPC stream to this file")
    _connection_flags(run)
    run.set_defaults(run=_exec)
    tasks = commands.add_parser("tasks", help="list your tasks, newest first")
    states = sorted(s for s in STATUS_NAMES.values() if s != "UNSPECIFIED")
    tasks.add_argument("--status", choices=states, type=str.upper)
    tasks.add_argument("--udf", default="", help="only this UDF (namespace/name[@N])")
    tasks.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _connection_flags(tasks)
    tasks.set_defaults(run=_tasks)
    logs = commands.add_parser("logs", help="print what a task's UDF printed")
    logs.add_argument("task_id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="print the output as it comes, to the end"
    )
    _connection_flags(logs)
    logs.set_defaults(run=_logs)
    _graph_commands(commands)
    return parser


def _graph_commands(commands: Any) -> None:
    graphs = commands.add_parser("graphs", help="list your task graphs, newest first")
    graphs.add_argument("--status", choices=sorted(GRAPH_ENDED | {"RUNNING"}), type=str.upper)
    graphs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _connection_flags(graphs)
    graphs.set_defaults(run=_graphs)
    graph = commands.add_parser("graph", help="show a task graph's nodes; watch, cancel, retry")
    graph.add_argument("graph_id")
    what = graph.add_mutually_exclusive_group()
    what.add_argument("-w", "--watch", action="store_true", help="follow it until it ends")
    what.add_argument("--cancel", action="store_true", help="stop it (running nodes are killed)")
    what.add_argument("--retry", action="store_true", help="run its failed nodes again, and wait")
    what.add_argument("--dot", action="store_true", help="print it as Graphviz DOT")
    _connection_flags(graph)
    graph.set_defaults(run=_graph)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t", "--target", default=DEFAULT_TARGET, help=f"server (default {DEFAULT_TARGET})"
    )
    tls = parser.add_argument_group("transport security (the token comes from TILEFN_TOKEN)")
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


def _connect(options: argparse.Namespace, client_options: Options | None = None) -> Client:
    """The client the connection flags describe; ValueError/OSError for bad TLS settings."""
    return Client(
        options.target,
        options=client_options,
        tls=options.tls,
        root_certificates=options.tls_ca,
        client_certificate=options.tls_cert,
        client_key=options.tls_key,
    )


def _tasks(options: argparse.Namespace) -> int:
    with _connect(options) as client:
        try:
            found = client.tasks(status=options.status, udf=options.udf, limit=options.limit)
        except TilefnError as exc:
            print(f"tilefn: {exc}", file=sys.stderr)
            return 1
    for task in found:
        when = task.created_at.strftime("%Y-%m-%d %H:%M:%S")
        detail = task.error_reason.removeprefix("ERROR_REASON_") or f"{task.rows} rows"
        print(f"{task.task_id}  {when}  {task.status:<9}  {task.method:<10}  {task.udf}  {detail}")
    return 0


def _logs(options: argparse.Namespace) -> int:
    with _connect(options) as client:
        try:
            if options.follow:  # as it is printed
                for text in client.follow_logs(options.task_id):
                    sys.stdout.write(text)
                    sys.stdout.flush()
                return 0
            logs = client.task_logs(options.task_id)
        except TilefnError as exc:
            print(f"tilefn: {exc}", file=sys.stderr)
            return 1
    if logs.truncated:
        print(f"[... {logs.total_bytes - len(logs.text.encode())} earlier bytes dropped ...]")
    sys.stdout.write(logs.text)
    return 0


def _graphs(options: argparse.Namespace) -> int:
    with _connect(options) as client:
        try:
            found = client.graphs(status=options.status, limit=options.limit)
        except TilefnError as exc:
            print(f"tilefn: {exc}", file=sys.stderr)
            return 1
    for info in found:
        when = info.created_at.strftime("%Y-%m-%d %H:%M:%S") if info.created_at else "-"
        counts = " ".join(f"{k.lower()}={v}" for k, v in sorted(info.node_counts.items()))
        print(f"{info.graph_id}  {when}  {info.status:<9}  {info.name or '-'}  {counts}")
    return 0


def _graph(options: argparse.Namespace) -> int:
    """Show one graph (after watching, cancelling or retrying it, if asked); exit status 1
    unless it succeeded or runs on."""
    with _connect(options) as client:
        try:
            graph = client.graph_by_id(options.graph_id)
            if options.cancel:
                graph.cancel()
            elif options.retry:
                graph.retry(progress=True)
            elif options.watch:
                graph.wait(progress=True)
        except TilefnError as exc:
            print(f"tilefn: {exc}", file=sys.stderr)
            return 1
        if options.dot:
            print(graph.to_dot())
            return 0
        status = graph.status
        print(f"graph {graph.graph_id}  {status}")
        for node in graph.nodes:
            print(_node_line(node.info))
            for instance in node.instances if node.mapped else []:
                print(_node_line(instance.info))
    return 0 if status in ("SUCCEEDED", "RUNNING") else 1


def _node_line(info: NodeInfo) -> str:
    detail = info.error_reason.removeprefix("ERROR_REASON_") or f"{info.result_bytes} bytes"
    return f"  {info.id:<24} {info.status:<13} {info.attempts}x  {info.task_id or '-'}  {detail}"


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
        client = _connect(options, Options(timeout=options.timeout))
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
