"""Runs inside the worker: confinement applied to itself before it reads any client byte.

In order: a session of its own (signals to "its group" reach only itself); its slot's memory
and pids cgroups (``_in_cgroups``); private mount,
network, IPC and UTS namespaces with a minimal read-only filesystem (``_in_filesystem``);
resource limits; an empty capability bounding set; a distinct unprivileged uid/gid for its slot;
empty capability sets; non-dumpable; ``no_new_privs``; Landlock (``_in_landlock``, where the
kernel has it); the seccomp filter (``_in_seccomp``). The PID namespace is made once by the
template (``_in_pidns``): every worker is born in it.
Each reports whether it is active; the worker sends the report with READY and the server logs
it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import _in_cgroups as cgroups
from . import _in_filesystem as filesystem
from . import _in_landlock as landlock
from . import _in_seccomp as seccomp

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_CAPSET = 126  # x86-64
LINUX_CAPABILITY_VERSION_3 = 0x20080522
EINVAL = 22
MIB = 1 << 20

#: Resource limits every worker gets (soft = hard, so a UDF cannot raise them).
RLIMITS = {
    resource.RLIMIT_CORE: 0,
    resource.RLIMIT_NOFILE: 1024,
    resource.RLIMIT_FSIZE: 256 * MIB,
    resource.RLIMIT_NPROC: 256,  # threads count; meaningful because each worker has its own uid
}

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class SandboxSetup:
    """What the template prepares once for all its workers."""

    #: An empty directory to mount each worker's private root on.
    root: str
    #: Paths bound read-only into every worker's root.
    paths: tuple[str, ...]
    #: RLIMIT_AS of each worker, in bytes.
    memory_bytes: int
    #: This template's cgroup directories (memory, pids); empty when unavailable.
    cgroups: tuple[str, ...] = ()
    #: The highest capability number the kernel knows (workers have no /proc to ask).
    last_cap: int = 63
    #: Worker slot n runs as uid and gid uid_base + n.
    uid_base: int = 200_000
    #: Why the template could not put its workers in a PID namespace; "" when it did.
    pid_namespace_error: str = "not attempted"


def prctl(option: int, arg: int) -> None:
    """Call prctl(2), raising OSError on failure."""
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent exits (and now, if it already has).

    A parent outside the caller's PID namespace (the template, seen from a worker) shows as 0,
    and so does the reaper that adopts the worker if the template died first: that case is
    caught by the namespace instead (its init exits once the template's lifeline closes, and
    the kernel kills the worker; ``_in_pidns``).
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() not in (expected_parent, 0):
        os.kill(os.getpid(), signal.SIGKILL)


def prepare(memory_bytes: int, pid_namespace_error: str) -> SandboxSetup:
    """Compute, in the template, what every worker needs to confine itself."""
    cap_file = Path("/proc/sys/kernel/cap_last_cap")
    last_cap = int(cap_file.read_text()) if cap_file.exists() else 63
    root = tempfile.mkdtemp(prefix=f"tilefn-root-{os.getpid()}-")
    paths = tuple(filesystem.readable_paths())
    return SandboxSetup(
        root,
        paths,
        memory_bytes,
        cgroups.prepare(),
        last_cap,
        pid_namespace_error=pid_namespace_error,
    )


#: Why a layer could not be applied in this worker (layer name -> error text).
FAILURES: dict[str, str] = {}


def apply_layers(setup: SandboxSetup, slot: int) -> dict[str, bool]:
    """Apply every available layer to the calling worker process; say which are active.

    Why a layer failed is recorded in FAILURES.
    """
    os.setsid()
    active = {"session": True, "pid_namespace": not setup.pid_namespace_error}
    if setup.pid_namespace_error:
        FAILURES["pid_namespace"] = setup.pid_namespace_error
    active["cgroups"] = _try("cgroups", cgroups.join, setup.cgroups, slot, setup.memory_bytes)
    own_proc = active["pid_namespace"]
    active["filesystem"] = _try("filesystem", filesystem.isolate, setup.root, setup.paths, own_proc)
    for limit, value in {**RLIMITS, resource.RLIMIT_AS: setup.memory_bytes}.items():
        resource.setrlimit(limit, (value, value))
    active["rlimits"] = True
    bounding = _drop_bounding_set(setup.last_cap)
    active["distinct_uid"] = _try("distinct_uid", _become, setup.uid_base + slot)
    active["capabilities_dropped"] = bounding and _clear_capabilities()
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    active["non_dumpable"] = active["no_new_privs"] = True
    active["landlock"] = _try("landlock", landlock.restrict)
    active["seccomp"] = seccomp.available()
    if active["seccomp"]:
        seccomp.install(seccomp.build(os.getpid()))
    return active


def _try(name: str, step: object, *args: object) -> bool:
    try:
        step(*args)  # type: ignore[operator]
    except OSError as exc:
        FAILURES[name] = str(exc)[:200]
        return False
    return True


def _become(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _drop_bounding_set(last_cap: int) -> bool:
    """Empty the bounding and ambient capability sets (needs CAP_SETPCAP, so before the uid)."""
    if not seccomp.available():  # only x86-64 is wired up
        return False
    for cap in range(last_cap + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != EINVAL:
            return False
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    return True


def _clear_capabilities() -> bool:
    """Empty the effective, permitted and inheritable sets."""
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    return bool(_libc.syscall(SYS_CAPSET, header, data) == 0)
