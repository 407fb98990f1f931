"""The Node.js example (examples/node/client.mjs) against real servers over the demo data.

It runs with ``node`` (its npm dependencies come from ``make test``: ``npm ci`` in
examples/node) and prints one JSON line per step; every value it decoded from Arrow is checked
against the same computation on a local tiledb-py read, and every error against the reason
and metadata the server documents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tilefn.client import Client

from demo_support import DemoServer, read_ranges
from pki_support import Pki

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
Record = dict[str, Any]


def run_node(address: str, token: str | None, **env: str) -> tuple[int, list[Record]]:
    """Run the example; return its exit code and the JSON lines it printed."""
    node = shutil.which("node")
    assert node, "node is not on PATH (Node.js 20+ is needed by make test)"
    assert (EXAMPLE / "node_modules").is_dir(), "run `make test` (it runs npm ci in examples/node)"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TILEFN_")}
    environment.update(env, **({"TILEFN_TOKEN": token} if token else {}))
    result = subprocess.run(
        [node, str(EXAMPLE / "client.mjs"), address],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, records


def steps(records: list[Record]) -> dict[str, Record]:
    return {r["step"]: r for r in records if "event" not in r}


@pytest.fixture(scope="module")
def output(demo_server: DemoServer) -> list[Record]:
    code, records = run_node(demo_server.address, demo_server.token)
    assert code == 0, records
    return records


def test_lists_the_demo_arrays(output: list[Record]) -> None:
    assert steps(output)["list_arrays"]["arrays"] == [
        {"uri": "tiledb://demo/readings", "namespace": "demo", "sparse": True},
        {"uri": "tiledb://demo/temperature", "namespace": "demo", "sparse": False},
    ]


def test_source_udf_batches_decode_as_they_stream(
    output: list[Record], demo_server: DemoServer
) -> None:
    with demo_server.temperature() as array:
        expected = read_ranges(array, [(0, 363)], [(0, 99)]) * 1.8 + 32
    result = steps(output)["source_udf"]
    values = result["columns"]["values"]
    assert (result["kind"], result["stream"], values["dtype"]) == ("ndarray", True, "<f8")
    assert values["shape"] == [364, 100] == list(expected.shape)
    np.testing.assert_allclose(values["sum"], expected.sum(), rtol=1e-12)
    np.testing.assert_allclose(values["head"], expected.ravel()[:5], rtol=1e-12)
    batches = [r for r in output if r.get("event") == "batch" and r["step"] == "source_udf"]
    assert [b["index"] for b in batches] == list(range(result["batches"]))
    assert result["batches"] == result["summary"]["batches"] >= 4  # a generator of 4 items
    start = 0
    for batch in batches:  # each batch holds the next rows, in order
        rows = expected[start : start + batch["rows"]]
        np.testing.assert_allclose(batch["sums"]["values"], rows.sum(), rtol=1e-12)
        start += batch["rows"]
    assert start == result["summary"]["rows"] == 364
    assert result["received_bytes"] == result["summary"]["ipc_bytes"]  # every piece, once
    # Decoded while the stream was still arriving, not after the last piece.
    assert batches[0]["pieces_so_far"] < batches[-1]["pieces_so_far"] <= result["pieces"]


def test_registered_udf_over_ranges(output: list[Record], demo_server: DemoServer) -> None:
    register = steps(output)["register"]
    assert (register["name"], register["version"]) == ("demo/station_stats", 1)
    assert register["action"] == "registered"  # a fresh store
    with demo_server.temperature() as array:
        temp = read_ranges(array, [(0, 30), (180, 210)], [(10, 19)])
    assert temp.shape == (62, 10)
    columns = steps(output)["registered_udf"]["columns"]
    assert steps(output)["registered_udf"]["kind"] == "dict"
    assert columns["station"]["values"] == list(range(10, 20))
    assert columns["days_above"]["values"] == (temp > 24.0).sum(axis=0).tolist()
    np.testing.assert_allclose(columns["mean"]["values"], temp.mean(axis=0), rtol=1e-12)
    assert {c: columns[c]["dtype"] for c in columns} == {
        "station": "<i8",
        "mean": "<f8",
        "days_above": "<i8",
    }


def test_udf_exception_arrives_with_reason_and_traceback(output: list[Record]) -> None:
    error = steps(output)["udf_raises"]
    assert (error["code"], error["reason"], error["domain"]) == (
        "UNKNOWN",
        "ERROR_REASON_UDF_RAISED",
        "tilefn",
    )
    assert error["metadata"]["exception_type"] == "ValueError"
    assert error["message"] == "ValueError: station 7 is offline"
    assert error["traceback"].rstrip().endswith("ValueError: station 7 is offline")
    assert error["details"] == ["google.rpc.ErrorInfo", "google.rpc.DebugInfo"]
    assert error["task_id"] == error["metadata"]["task_id"]  # the tilefn-task-id trailer


def test_unknown_array_error(output: list[Record]) -> None:
    error = steps(output)["unknown_array"]
    assert (error["code"], error["reason"]) == ("NOT_FOUND", "ERROR_REASON_ARRAY_NOT_FOUND")
    assert error["metadata"]["array"] == "tiledb://demo/no-such-array"


def test_node_registration_is_seen_from_python(
    output: list[Record], demo_server: DemoServer
) -> None:
    with Client(demo_server.address, token=demo_server.token) as client:
        udf = client.udf("demo/station_stats")
        assert not udf.pickled and udf.entry_point == "station_stats"
        assert [p["name"] for p in udf.parameters] == ["data", "threshold", "first_station"]
        assert udf.parameters[2]["default_json"] == "0"
        assert client.exec("demo/station_stats", {"temp": np.ones((2, 3))}, 0.5).keys() == {
            "station",
            "mean",
            "days_above",
        }


def test_a_second_run_reuses_the_registered_udf(
    output: list[Record], demo_server: DemoServer
) -> None:
    code, again = run_node(demo_server.address, demo_server.token)
    assert code == 0, again
    assert steps(again)["register"]["action"] == "existing"
    assert steps(again)["register"]["digest"] == steps(output)["register"]["digest"]
    first, second = steps(output)["registered_udf"], steps(again)["registered_udf"]
    assert first["columns"] == second["columns"] and first["task_id"] != second["task_id"]


def test_without_token_the_first_call_fails_unauthenticated(demo_server: DemoServer) -> None:
    code, records = run_node(demo_server.address, None)
    assert code == 1
    (fatal,) = records
    assert (fatal["step"], fatal["code"], fatal["reason"]) == (
        "fatal",
        "UNAUTHENTICATED",
        "ERROR_REASON_TOKEN_MISSING",
    )


def test_mutual_tls(demo_mtls_server: DemoServer, pki: Pki) -> None:
    tls = {"TILEFN_CA_FILE": str(pki.ca.cert), "TILEFN_CLIENT_CERT": str(pki.client.cert),
           "TILEFN_CLIENT_KEY": str(pki.client.key)}  # fmt: skip
    code, records = run_node(demo_mtls_server.address, demo_mtls_server.token, **tls)
    assert code == 0, records
    assert steps(records)["register"]["action"] == "registered"
    assert steps(records)["source_udf"]["columns"]["values"]["shape"] == [364, 100]
    assert steps(records)["unknown_array"]["reason"] == "ERROR_REASON_ARRAY_NOT_FOUND"
