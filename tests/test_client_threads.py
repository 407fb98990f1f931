"""The client builds requests from several threads at once (cloudpickle's by-value registry is
process-wide)."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import cloudpickle

from tilefn.client._request import Options, build_request


def test_pickling_from_many_threads(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "callers_own_module.py").write_text("def f(n):\n    return n * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("callers_own_module")
    errors: list[BaseException] = []
    pickles: list[bytes] = []

    def build() -> None:
        try:
            for _ in range(200):
                request = build_request(module.f, (1,), {}, Options())
                pickles.append(request.udf.pickled.data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    del sys.modules["callers_own_module"]  # as on the server: the module is not importable
    monkeypatch.syspath_prepend("/nonexistent")
    sys.path.remove(str(tmp_path))
    assert {cloudpickle.loads(data)(2) for data in pickles} == {6}  # all by value
