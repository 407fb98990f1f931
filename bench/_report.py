"""Rows of the result table: tilefn vs its yardstick, ratio, target, PASS/MISS; machine facts."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._stats import Spread

PACKAGES = ("tilefn", "grpcio", "protobuf", "pyarrow", "numpy", "tiledb", "cloudpickle", "ray")


@dataclass(frozen=True)
class Target:
    """A goal for tilefn's median: ``op`` is "<=" or ">="; relative goals are x the peer's."""

    op: str
    value: float
    relative: bool = True
    unit: str = ""

    def text(self) -> str:
        return f"{self.op} {self.value:g}{'x' if self.relative else ' ' + self.unit}"

    def met(self, tilefn: float, ratio: float) -> bool:
        measured = ratio if self.relative else tilefn
        return measured <= self.value if self.op == "<=" else measured >= self.value


@dataclass(frozen=True)
class Row:
    """One line of the table. ``ratio`` is tilefn's median over the peer's median."""

    workload: str
    metric: str
    tilefn: Spread
    peer: str
    peer_value: Spread
    target: Target | None

    @property
    def ratio(self) -> float:
        return self.tilefn.median / self.peer_value.median

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.target.met(self.tilefn.median, self.ratio) else "MISS"

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found.update(ratio=self.ratio, verdict=self.verdict)
        found["target"] = None if self.target is None else self.target.text()
        return found


def _spread(value: Spread) -> str:
    return f"{value.median:.4g} [{value.min:.4g}-{value.max:.4g}]"


HEADER = (
    "workload",
    "metric",
    "tilefn med [min-max]",
    "peer",
    "peer med [min-max]",
    "ratio",
    "target",
    "result",
)


def table(rows: list[Row]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [HEADER] + [
        (
            r.workload,
            r.metric,
            _spread(r.tilefn),
            r.peer,
            _spread(r.peer_value),
            f"{r.ratio:.3g}x",
            r.target.text() if r.target else "-",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _git(*args: str) -> str:
    found = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return found.stdout.strip()


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (all CPUs) and by this process and its
    waited-for descendants; their difference over a run is other load sharing the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    mine = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    ours = sum(usage.ru_utime + usage.ru_stime for usage in mine)
    return (user + nice + system + irq + softirq) / ticks, ours


def machine() -> dict[str, Any]:
    """Facts that make two runs comparable (or not)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "loadavg_at_start": os.getloadavg(),
    }
