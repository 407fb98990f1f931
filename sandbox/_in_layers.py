"""Runs inside the worker: confinement applied to itself before it reads any client byte.

Applied now, in order: a session of its own (so signals to "its group" reach only itself),
death with the template, non-dumpable, resource limits, ``no_new_privs``, and the seccomp filter
(``_in_seccomp``). Each reports whether it is active; the worker sends the report with READY and
the server logs it. Still to come (the sandbox issue): mount/PID/net/IPC/UTS namespaces, a
distinct uid per worker slot, Landlock and per-worker cgroups.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from pathlib import Path

from . import _in_seccomp as seccomp

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_CAPSET = 126  # x86-64
LINUX_CAPABILITY_VERSION_3 = 0x20080522
MIB = 1 << 20

#: Resource limits every worker gets (soft = hard, so a UDF cannot raise them).
RLIMITS = {
    resource.RLIMIT_CORE: 0,
    resource.RLIMIT_NOFILE: 1024,
    resource.RLIMIT_FSIZE: 256 * MIB,
}

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, arg: int) -> None:
    """Call prctl(2), raising OSError on failure."""
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent exits (and now, if it already has)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)


def drop_capabilities() -> bool:
    """Empty the bounding, ambient, effective, permitted and inheritable capability sets."""
    if not seccomp.available():  # the capset syscall number below is x86-64's
        return False
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            return False  # EINVAL: the kernel does not know this capability; anything else fails
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}, all zero
    return bool(_libc.syscall(SYS_CAPSET, header, data) == 0)


def apply_layers() -> dict[str, bool]:
    """Apply every available layer to the calling worker process; say which are active."""
    os.setsid()
    prctl(PR_SET_DUMPABLE, 0)
    for limit, value in RLIMITS.items():
        resource.setrlimit(limit, (value, value))
    active = {"session": True, "non_dumpable": True, "rlimits": True}
    active["capabilities_dropped"] = drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    active["no_new_privs"] = True
    active["seccomp"] = seccomp.available()
    if active["seccomp"]:
        seccomp.install(seccomp.build(os.getpid()))
    return active
