"""The workloads: one prebuilt ExecuteUdfRequest each, and the order arrivals take them in.

Requests are built once, with the Python client's own request builder, from source-text UDFs
(no per-call pickling), so the load generator spends its time sending, not encoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tilefn.client import ArrayRead, Options, Source
from tilefn.client._request import build_request
from tilefn.v1 import udf_service_pb2

from ._config import WorkloadConfig

TRIVIAL = Source("def add_one(x):\n    return x + 1\n")
ARRAY = Source(
    "import numpy as np\n\n"
    "def column_means(data):\n"
    "    return {name: float(np.mean(values)) for name, values in data.items()\n"
    "            if values.dtype.kind in 'iuf'}\n"
)
LARGE = Source(
    "import numpy as np\n\ndef large(size):\n    return np.arange(size // 8, dtype=np.float64)\n"
)
FAIL = Source(
    "def fail():\n    raise RuntimeError('loadtest: this UDF always raises (expected)')\n"
)
#: What a UDF that raises ends with (docs/errors.md: ERROR_REASON_UDF_RAISED).
RAISED_CODE = "UNKNOWN"


@dataclass(frozen=True)
class Workload:
    """One kind of request and the outcome it should have."""

    name: str
    request: udf_service_pb2.ExecuteUdfRequest
    #: The gRPC status code name a correct server answers with: "OK", or the fail workload's.
    expected_code: str = "OK"


def build_workloads(config: WorkloadConfig) -> dict[str, Workload]:
    """Every workload, by name."""
    options = Options()
    read = ArrayRead(config.array, ranges=list(config.array_ranges))
    requests = {
        "trivial": build_request(TRIVIAL, (1,), {}, options),
        "array": build_request(ARRAY, (), {}, options, [read]),
        "large": build_request(LARGE, (config.large_bytes,), {}, options),
        "fail": build_request(FAIL, (), {}, options),
    }
    return {
        name: Workload(name, request, RAISED_CODE if name == "fail" else "OK")
        for name, request in requests.items()
    }


class MixPicker:
    """Picks workloads in exact proportion to their weights, evenly interleaved.

    Smooth weighted round-robin (as in nginx): any run of N picks holds each workload within
    one of its share, so even a two-second test sends the rare workloads, deterministically.
    """

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = {name: w for name, w in weights.items() if w > 0}
        if not self._weights:
            raise ValueError("the mix needs at least one workload with a positive weight")
        self._total = sum(self._weights.values())
        self._current = dict.fromkeys(self._weights, 0)

    def next(self) -> str:
        """The next workload's name."""
        for name, weight in self._weights.items():
            self._current[name] += weight
        chosen = max(self._current, key=self._current.__getitem__)
        self._current[chosen] -= self._total
        return chosen
