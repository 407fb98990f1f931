"""The load-test harness (loadtest/) end to end: a real server with the demo arrays, short
runs, then the report's structure and counts. Timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tilefn.server import demo

from conftest import SESSION_TOKEN, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
TOKEN = SESSION_TOKEN  # a real token: the server checks it


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server over the demo arrays, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("loadtest")
    demo.create(folder / "data")
    proc = ServerProcess(folder, "--data-root", str(folder / "data"))
    yield proc
    assert proc.stop() == 0, proc.log_path.read_text()


def loadtest(*flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m loadtest`` from the checkout, the token given through the environment."""
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *flags],
        cwd=ROOT,
        env={**os.environ, "TILEFN_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(out: Path, result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    files = [out / "report.json", out / "report.md", out / "latency.html"]
    for file in files:
        assert file.stat().st_size > 0, file
    for text in [result.stdout, result.stderr, *(f.read_text() for f in files)]:
        assert TOKEN not in text  # sent as metadata, never shown
    data: dict[str, Any] = json.loads(files[0].read_text())
    assert data["settings"]["target"]["token"] is True
    return data


def test_run_and_saturation(demo_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = loadtest(
        "--target", demo_server.address, "--out", str(out), "--warmup", "0",
        "--rate", "20", "--duration", "2", "--mix", "trivial=40,array=20,large=20,fail=20",
        "--large-bytes", "256KiB",
        "--saturate", "--start-rate", "10", "--step-factor", "2", "--max-rate", "20",
        "--step-duration", "1", "--settle", "0", "--retries", "0",
        "--p99-ms", "60000",  # above the 10 s deadline: only wrong outcomes can break a step
    )  # fmt: skip
    data = report(out, result)
    run = data["run"]
    assert run["sent"] == 40 == run["completed"] + run["errors"]
    assert run["errors_by_code"] == {"UNKNOWN": 8}  # the fail workload, as docs/errors.md says
    assert run["errors_by_reason"] == {"ERROR_REASON_UDF_RAISED": 8}
    assert run["unexpected"] == 0
    workloads = run["workloads"]
    assert {name: w["sent"] for name, w in workloads.items()} == {
        "trivial": 16, "array": 8, "large": 8, "fail": 8,
    }  # fmt: skip
    assert workloads["fail"]["completed"] == 0
    assert workloads["fail"]["errors_by_code"] == {"UNKNOWN": 8}
    assert all(workloads[name]["errors"] == 0 for name in ("trivial", "array", "large"))
    assert run["received_mib"] >= 8 * 0.25
    latency = run["latency_ms"]
    assert latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99_9"] <= latency["max"]
    assert [row["t"] for row in run["timeline"]] == [0, 1]
    assert sum(row["sent"] for row in run["timeline"]) == 40
    assert set(run["client"]) >= {"lag_ms", "queue_wait_ms", "cpu_percent", "saturated"}

    saturation = data["saturation"]
    assert [step["offered_rate"] for step in saturation["steps"]] == [10, 20]
    assert all(step["sent"] == step["completed"] + step["errors"] for step in saturation["steps"])
    assert saturation["held_rate"] == 20 and saturation["broke_at"] is None
    assert saturation["conclusion"].startswith("Did not saturate")
    assert "UNKNOWN 8" in (out / "report.md").read_text()
    assert (out / "latency.html").read_text().count("<svg") == 2
    assert "[run 20/s]" in result.stderr  # the progress line


def test_saturation_breaks_on_unexpected_errors(demo_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = loadtest(
        "--target", demo_server.address, "--out", str(out), "--warmup", "0", "--no-progress",
        "--duration", "0", "--mix", "trivial=1,array=1", "--array", "tiledb://demo/missing",
        "--saturate", "--start-rate", "10", "--step-duration", "1", "--settle", "0",
        "--retries", "1",
    )  # fmt: skip
    data = report(out, result)
    assert "run" not in data
    saturation = data["saturation"]
    steps = saturation["steps"]
    assert [(s["offered_rate"], s["attempt"]) for s in steps] == [(10, 1), (10, 2)]
    for step in steps:
        assert step["errors_by_code"] == {"NOT_FOUND": 5} and step["unexpected"] == 5
        assert step["broken_by"] and "unexpected outcomes" in step["broken_by"][0]
    assert saturation["held_rate"] is None and saturation["broke_at"] == 10
    assert saturation["conclusion"].startswith("Broke at the first step")
    assert (out / "latency.html").read_text().count("<svg") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mix", "trivial=1,bogus=2"], "unknown workload 'bogus'"),
        (["--duration", "0"], "nothing to do"),
        (["--large-bytes", "lots"], "want a size"),
    ],
)
def test_bad_flags(flags: list[str], message: str) -> None:
    result = loadtest(*flags)
    assert result.returncode == 2 and message in result.stderr
