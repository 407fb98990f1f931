"""tilefn._malloc: large messages stop faulting in fresh pages on every allocation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHURN = """
import resource
from tilefn import _malloc
from tilefn.server import _udf_service  # a server's heap, as in the server
from tilefn.v1 import udf_service_pb2
_malloc.tune()
wire = _udf_service.ipc_response(b"x" * (1 << 20))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # what a client does with each 1 MiB piece of a result
    response = udf_service_pb2.ExecuteUdfResponse.FromString(wire)
    piece = response.ipc
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(**env: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CHURN],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_malloc_reuses_freed_megabytes() -> None:
    untuned = page_faults(TILEFN_DEFAULT_MALLOC="1")
    if untuned < 200 * 200:  # ~256 faults per MiB, every time, when glibc trims its heap
        pytest.skip(f"this malloc did not churn ({untuned} faults): nothing to compare")
    assert page_faults() < untuned / 20
