"""The contract: committed generated code matches the .proto files, and buf lint is clean."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


def load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("genprotos", ROOT / "scripts" / "genprotos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_current() -> None:
    assert load_generator().drift() == [], "run `make protos` and commit the result"


def test_drift_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself works: a stale copy of the generated code is reported."""
    generator = load_generator()
    copy = tmp_path / "protos"
    subprocess.run(["cp", "-r", str(ROOT / "protos"), str(copy)], check=True)
    stale = copy / "tilefn" / "v1" / "udf_pb2.py"
    stale.write_text(stale.read_text() + "\n# edited by hand\n")
    monkeypatch.setattr(generator, "PROTOS", copy)
    assert generator.drift() == ["tilefn/v1/udf_pb2.py"]


def test_buf_lint() -> None:
    if not BUF.exists():
        pytest.fail("buf is missing: run `npm ci` (make test does it)")
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
