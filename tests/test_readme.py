"""The README's quickstart works as written, against the demo data `make run` creates."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tiledb

from tilefn.server import demo

from conftest import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def quickstart() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(from tilefn.client import Client\n.*?)```", text, re.S)
    assert match, "the README has no quickstart block"
    return match.group(1)


def test_readme_quickstart(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert demo.create(data) == ["tiledb://demo/temperature", "tiledb://demo/readings"]
    assert demo.create(data) == []  # idempotent: `make run` calls it every time
    server = make_server("--data-root", str(data))
    code = quickstart().replace("127.0.0.1:50051", server.address)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    printed = np.array(result.stdout.strip().strip("[]").split(), dtype=float)
    with tiledb.open(str(data / "demo" / "temperature")) as array:
        expected = array[0:7, :]["temp"].mean(axis=1)
    np.testing.assert_allclose(printed, expected, rtol=1e-6)
