"""The grpcurl commands of docs/clients.md, run as written against real servers over the demo data.

Every ```sh block of that page that starts with ``grpcurl`` is run with bash (pipes included),
with only the address changed to the test server's and ``$TILEFN_TOKEN`` set to the demo
user's token; each command has a check here, keyed by the method (or ``list``) it calls, and a
command added to the page without one fails the test. The TLS command runs in the folder of
the session's PKI, whose files are named as the page names them.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow
import pytest

from demo_support import DemoServer, read_ranges
from pki_support import Pki

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "clients.md"
PLAINTEXT_ADDRESS = "127.0.0.1:50051"
TLS_ADDRESS = "tilefn.example.com:50051"
Run = subprocess.CompletedProcess[str]


def documented() -> dict[str, str]:
    """The page's grpcurl commands by the method they call: the last word before any pipe."""
    blocks = re.findall(r"```sh\n(grpcurl .*?)```", PAGE.read_text(), re.S)
    commands = {block.replace("\\\n", " ").split("|")[0].split()[-1]: block for block in blocks}
    assert len(commands) == len(blocks), "two commands of docs/clients.md call the same method"
    return commands


def run(command: str, address: str, token: str, cwd: Path) -> Run:
    """Run a documented command with bash, as a reader would, against ``address``."""
    command = command.replace(PLAINTEXT_ADDRESS, address).replace(TLS_ADDRESS, address)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # grpcurl, python3
    env = {**os.environ, "PATH": path, "TILEFN_TOKEN": token}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def replies(run: Run) -> list[Any]:
    """The JSON objects grpcurl printed, one per response message."""
    assert run.returncode == 0, run.stderr
    decoder, text, found = json.JSONDecoder(), run.stdout.strip(), []
    while text:
        value, end = decoder.raw_decode(text)
        found.append(value)
        text = text[end:].lstrip()
    return found


def warm(temp: np.ndarray, threshold: float) -> dict[str, Any]:
    """What demo/warm_cells computes, locally."""
    cells = temp[temp > threshold]
    return {"cells": int(cells.size), "mean": float(cells.mean())}


def check_health(run: Run, demo: DemoServer) -> None:
    assert replies(run) == [{"status": "SERVING"}]


def check_list(run: Run, demo: DemoServer) -> None:
    assert run.returncode == 0, run.stderr
    assert {"grpc.health.v1.Health", "tilefn.v1.UdfService", "tilefn.v1.ArrayService"} <= set(
        run.stdout.split()
    )


def check_describe(run: Run, demo: DemoServer) -> None:
    assert run.returncode == 0, run.stderr
    assert (
        "message ExecuteUdfRequest {" in run.stdout and ".tilefn.v1.UdfSpec udf = 1;" in run.stdout
    )


def check_list_arrays(run: Run, demo: DemoServer) -> None:
    uris = [a["uri"] for a in replies(run)[0]["arrays"]]
    assert uris == ["tiledb://demo/readings", "tiledb://demo/temperature"]


def check_register(run: Run, demo: DemoServer) -> None:
    (udf,) = replies(run)
    assert (udf["name"], udf["version"], udf["created_by"]) == ("demo/warm_cells", 1, "demo")
    assert [p["name"] for p in udf["definition"]["parameters"]] == ["data", "threshold"]


def check_call(run: Run, demo: DemoServer) -> None:
    assert run.returncode == 0, run.stderr
    (row,) = ast.literal_eval(run.stdout)  # pyarrow's to_pylist(): one row, one json column
    with demo.temperature() as array:
        temp = read_ranges(array, [(150, 240)], [(0, 99)])  # the command: every station
    expected = warm(temp, 25)
    got = json.loads(row["json"])
    assert got["cells"] == expected["cells"] > 0
    assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12)


def check_execute(run: Run, demo: DemoServer) -> None:
    messages = replies(run)
    assert list(messages[0]) == ["task"] and list(messages[-1]) == ["summary"]
    task_id = messages[0]["task"]["task_id"]
    assert messages[-1]["summary"]["task_id"] == task_id
    data = b"".join(base64.b64decode(m["ipc"]) for m in messages[1:-1])
    table = pyarrow.ipc.open_stream(data).read_all()
    assert table.schema.metadata[b"tilefn.kind"] == b"json"
    with demo.temperature() as array:
        expected = warm(read_ranges(array, [(0, 59)], [(0, 9)]), 5.5)
    got = json.loads(table.column("json")[0].as_py())
    assert got["cells"] == expected["cells"] > 0
    assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12)


def check_error(run: Run, demo: DemoServer) -> None:
    assert run.returncode == 64 + 5, run.stderr  # grpcurl exits with 64 + the status code
    status = json.loads(run.stderr)
    assert (status["code"], status["message"]) == (5, "no array named tiledb://demo/no-such-array")
    (info,) = status["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert (info["reason"], info["domain"]) == ("ERROR_REASON_ARRAY_NOT_FOUND", "tilefn")
    assert info["metadata"]["array"] == "tiledb://demo/no-such-array"


def check_server_info(run: Run, demo: DemoServer) -> None:
    (info,) = replies(run)
    assert info["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert int(info["limits"]["max_unary_result_bytes"]) > 0


Check = Callable[[Run, DemoServer], None]
PLAINTEXT: dict[str, Check] = {  # in the page's order: the calls use the registered UDF
    "grpc.health.v1.Health/Check": check_health,
    "list": check_list,
    "tilefn.v1.ExecuteUdfRequest": check_describe,
    "tilefn.v1.ArrayService/ListArrays": check_list_arrays,
    "tilefn.v1.RegistryService/RegisterUdf": check_register,
    "tilefn.v1.UdfService/CallUdf": check_call,
    "tilefn.v1.UdfService/ExecuteUdf": check_execute,
    "tilefn.v1.ArrayService/GetArraySchema": check_error,
}
TLS: dict[str, Check] = {"tilefn.v1.ServerInfoService/GetServerInfo": check_server_info}


def test_every_documented_command_is_checked() -> None:
    assert list(documented()) == [*PLAINTEXT, *TLS]


@pytest.fixture(scope="module")
def plaintext_runs(
    demo_server: DemoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    commands, cwd = documented(), tmp_path_factory.mktemp("grpcurl")
    yield {
        method: run(commands[method], demo_server.address, demo_server.token, cwd)
        for method in PLAINTEXT
    }


@pytest.mark.parametrize("method", PLAINTEXT)
def test_plaintext_command(
    method: str, plaintext_runs: dict[str, Run], demo_server: DemoServer
) -> None:
    PLAINTEXT[method](plaintext_runs[method], demo_server)


@pytest.mark.parametrize("method", TLS)
def test_mutual_tls_command(method: str, demo_mtls_server: DemoServer, pki: Pki) -> None:
    command = documented()[method]
    assert "-plaintext" not in command
    result = run(command, demo_mtls_server.address, demo_mtls_server.token, pki.ca.cert.parent)
    TLS[method](result, demo_mtls_server)
