"""Load-test settings: frozen dataclasses, plus parsers for the flags that need one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The workloads a mix may name, in report order.
WORKLOADS = ("trivial", "array", "large", "fail")
DEFAULT_MIX = "trivial=80,array=10,large=5,fail=5"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}


@dataclass(frozen=True)
class TargetConfig:
    """Where and how to connect."""

    #: Any gRPC target: "host:port", "dns:///name:port", "ipv4:127.0.0.1:1,127.0.0.1:2".
    address: str = "127.0.0.1:50051"
    #: Connect with TLS instead of plaintext.
    tls: bool = False
    #: PEM file of the certificate authorities to trust (TLS only); None: the system roots.
    ca_cert: Path | None = None
    #: Name to verify the server certificate against, when it differs from the target host.
    tls_server_name: str = ""
    #: PEM client certificate and its private key, for servers that require mutual TLS.
    client_cert: Path | None = None
    client_key: Path | None = None
    #: Bearer token sent as ``authorization`` metadata on every call; never printed or saved.
    token: str = field(default="", repr=False)
    #: gRPC load-balancing policy, e.g. "round_robin" for a multi-address target; "": gRPC's.
    lb_policy: str = ""


@dataclass(frozen=True)
class WorkloadConfig:
    """What the array and large workloads do."""

    #: The array the ``array`` workload reads.
    array: str = "tiledb://demo/temperature"
    #: Ranges of that read, TileDB Cloud style: one entry per dimension, null = whole domain.
    array_ranges: tuple[Any, ...] = ((0, 89), None)
    #: Bytes of the result the ``large`` workload returns.
    large_bytes: int = 4 << 20


@dataclass(frozen=True)
class PhaseConfig:
    """One stretch of constant-rate, open-model load."""

    #: Arrivals per second, whatever the server does (open model).
    rate: float
    #: Seconds of arrivals; requests still in flight at the end are awaited.
    duration: float
    #: Workload name -> weight; arrivals follow these proportions exactly.
    mix: dict[str, int]
    #: Most requests in flight at once; later arrivals wait in the client, timed all along.
    concurrency: int = 256
    #: Seconds a request may take from its intended send time (its gRPC deadline).
    timeout: float = 10.0


@dataclass(frozen=True)
class SaturationConfig:
    """The search for the highest rate the target holds."""

    #: Rate of the first step, in requests per second.
    start_rate: float = 20.0
    #: Each step's rate is the previous one times this.
    factor: float = 1.5
    #: Seconds of load per step.
    step_duration: float = 5.0
    #: Stop (without a break) once the next step would pass this rate.
    max_rate: float = 5000.0
    #: A step breaks when its p99 latency exceeds this many milliseconds...
    p99_ms: float = 250.0
    #: ... or when this fraction of its requests end in an unexpected outcome.
    error_rate: float = 0.01
    #: Seconds of rest between steps, so one step's backlog does not leak into the next.
    settle: float = 1.0
    #: Times a breaking step is run again before it counts (a blip is not saturation).
    retries: int = 1


@dataclass(frozen=True)
class LoadConfig:
    """Everything one ``python -m loadtest`` invocation does."""

    target: TargetConfig
    workloads: WorkloadConfig
    #: The constant-rate run (skipped when its duration is 0); saturation steps reuse its
    #: mix, concurrency cap and timeout.
    run: PhaseConfig
    #: The saturation search; None skips it.
    saturation: SaturationConfig | None
    #: Seconds of unrecorded load before the run, to start the server's workers.
    warmup: float = 1.0
    #: Folder for report.json, report.md and latency.html.
    out: Path = Path("loadtest/out")
    #: Show the live progress line on stderr.
    progress: bool = True


def parse_mix(text: str) -> dict[str, int]:
    """``"trivial=80,fail=5"`` -> ``{"trivial": 80, "fail": 5}``; raises ValueError."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}: choose from {', '.join(WORKLOADS)}")
        if not sep or not weight.strip().isdigit():
            raise ValueError(f"{part!r}: want name=weight with a whole-number weight")
        mix[name] = mix.get(name, 0) + int(weight)
    if not any(mix.values()):
        raise ValueError("the mix needs at least one workload with a positive weight")
    return {name: mix[name] for name in WORKLOADS if mix.get(name)}


def parse_size(text: str) -> int:
    """``"4MiB"``, ``"512k"``, ``"1000"`` -> bytes; raises ValueError."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r}: want a size such as 4MiB, 512KiB or 1000")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_ranges(text: str) -> tuple[Any, ...]:
    """JSON ranges, one entry per dimension: ``[[0, 89], null]``; raises ValueError."""
    ranges = json.loads(text)
    if not isinstance(ranges, list):
        raise ValueError(f"{text!r}: want a JSON list with one entry per dimension")
    return tuple(tuple(r) if isinstance(r, list) and len(r) == 2 else r for r in ranges)
