"""Runs inside the worker: confinement applied to itself before it reads any client byte.

Present layers: die with the template (parent-death signal), ``no_new_privs``, no core dumps, and
no inherited descriptors besides the worker's channel. The kernel-level layers (namespaces,
per-slot uids, Landlock, seccomp, cgroups) are the sandbox issue's work and plug in here.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

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


def apply_layers() -> None:
    """Apply every available layer to the calling worker process."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
