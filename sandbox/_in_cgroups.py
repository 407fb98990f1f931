"""Runs in the template and the worker: per-worker cgroup (v1) limits on memory, processes, CPU.

The template makes ``tilefn-<pid>`` under its own memory, pids and (where mounted) cpu cgroups;
each worker, still root and before it leaves the host's filesystem view, moves itself into
``w<slot>`` there with ``memory.limit_in_bytes`` (swap included where the kernel accounts it),
``pids.max`` and a CFS quota of ``CPU_CORES`` set. The kernel then kills only that worker when it
exceeds its memory, and the template reads the OOM counter when it reaps the worker so the server
can say why it died. The CPU quota keeps a UDF's threads from taking more than one core, so one
execution cannot starve the others (or the server) on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
#: Used where the kernel offers it; the memory and pids controllers are required.
OPTIONAL_CONTROLLERS = ("cpu",)
PIDS_MAX = 256
#: Cores each worker may use at most (CFS quota over period).
CPU_CORES = 1.0
CFS_PERIOD_US = 100_000


def prepare() -> tuple[str, ...]:
    """Create this template's cgroups; empty when cgroup v1 controllers are not writable."""
    own = _own_paths()
    bases: list[str] = []
    for controller in CONTROLLERS + OPTIONAL_CONTROLLERS:
        base = _make_base(controller, own)
        if base is None and controller in CONTROLLERS:
            remove(tuple(bases))
            return ()
        bases += [base] if base else []
    return tuple(bases)


def _make_base(controller: str, own: dict[str, str]) -> str | None:
    if controller not in own:
        return None
    parent = ROOT / controller / own[controller].lstrip("/")
    base = parent / f"tilefn-{os.getpid()}"
    _remove_stale(parent)
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return None
    return str(base)


def _own_paths() -> dict[str, str]:
    paths = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
    return paths


def join(bases: tuple[str, ...], slot: int, memory_bytes: int) -> None:
    """Move the calling worker into its slot's cgroups with their limits set."""
    if not bases:
        raise OSError(95, "cgroup v1 memory and pids controllers are not available")
    for base in bases:
        group = Path(base, f"w{slot}")
        group.mkdir(exist_ok=True)
        if base.startswith(str(ROOT / "memory")):
            _limit_memory(group, memory_bytes)
        elif base.startswith(str(ROOT / "pids")):
            (group / "pids.max").write_text(str(PIDS_MAX))
        else:
            (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(int(CFS_PERIOD_US * CPU_CORES)))
        (group / "cgroup.procs").write_text(str(os.getpid()))


def kill_stragglers(bases: tuple[str, ...], slot: int) -> None:
    """SIGKILL anything still in a slot's groups once its worker has exited.

    Workers cannot fork (seccomp), so this finds nothing unless a layer failed; it makes sure a
    slot's uid and groups are empty before the next worker gets them.
    """
    for base in bases:
        with contextlib.suppress(OSError):
            for pid in Path(base, f"w{slot}", "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            return  # every controller's group holds the same processes


def oom_kills(bases: tuple[str, ...], slot: int) -> int:
    """How many times the kernel's OOM killer has struck in this slot's memory cgroup."""
    for base in bases:
        control = Path(base, f"w{slot}", "memory.oom_control")
        with contextlib.suppress(OSError):
            for line in control.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    return 0


def _remove_stale(parent: Path) -> None:
    """Remove groups left by templates that were killed before they could clean up."""
    for stale in parent.glob("tilefn-*"):
        pid = stale.name.removeprefix("tilefn-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove((str(stale),))


def remove(bases: tuple[str, ...]) -> None:
    """Remove the template's cgroups (their workers must have exited)."""
    for base in bases:
        for group in Path(base).glob("w*"):
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            Path(base).rmdir()


def set_memory(bases: tuple[str, ...], slot: int, memory_bytes: int) -> None:
    """Change a slot's memory limit (from the template, which is root)."""
    for base in bases:
        if base.startswith(str(ROOT / "memory")):
            _limit_memory(Path(base, f"w{slot}"), memory_bytes)


def _limit_memory(group: Path, memory_bytes: int) -> None:
    """Set memory (and, where swap is accounted, memory+swap) to the same limit, up or down.

    The kernel insists on memsw >= memory at every step: going up (a slot's next worker after
    a lowered one), memsw must move first; going down, memory must. Trying memsw on both sides
    of the memory write covers both directions.
    """
    memsw = group / "memory.memsw.limit_in_bytes"
    with contextlib.suppress(OSError):  # fails going up, and where swap is not accounted
        memsw.write_text(str(memory_bytes))
    (group / "memory.limit_in_bytes").write_text(str(memory_bytes))
    with contextlib.suppress(OSError):
        memsw.write_text(str(memory_bytes))
