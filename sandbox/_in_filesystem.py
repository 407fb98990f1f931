"""Runs inside the worker: private namespaces and a minimal, read-only filesystem view.

The worker unshares mount, network, IPC and UTS namespaces, then pivots into a fresh tmpfs root
holding only read-only binds of what Python needs (the interpreter, the virtualenv, the tilefn
sources, /usr), four device nodes, a private size- and inode-capped ``/tmp`` (noexec) and a
fresh ``/proc`` of the workers' PID namespace that shows the worker only itself. The server's
files, other tenants' data, the host's /proc and the host /tmp are simply not there, and the
network namespace has no interfaces. Needs CAP_SYS_ADMIN (the server runs as root); otherwise
the layer reports itself unavailable and the worker keeps the host view.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86-64
DEVICES = ("null", "zero", "random", "urandom")
SCRATCH_OPTIONS = b"size=64m,nr_inodes=4096,mode=1777"
#: Only processes of the worker's own uid, and only the per-process part of procfs.
PROC_OPTIONS = b"hidepid=invisible,subset=pid"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: bytes = b""
) -> None:
    encoded = [s.encode() if s is not None else None for s in (source, target, fstype)]
    _check(_libc.mount(*encoded, ctypes.c_ulong(flags), data or None), f"mount {target}")


def readable_paths() -> list[str]:
    """What a worker must be able to read: computed once, in the template, before any fork."""
    wanted = {sys.prefix, sys.base_prefix, "/usr", "/etc/ld.so.cache", "/etc/localtime"}
    for entry in sys.path:
        path = Path(entry)
        if path.is_dir():
            wanted.add(str(path))
            if "__editable__" in path.name:  # strict editable installs link to the sources
                wanted.update(str(p.resolve().parent) for p in path.rglob("*") if p.is_symlink())
    resolved = sorted({os.path.realpath(p) for p in wanted if os.path.exists(p)})
    return [p for p in resolved if not any(p.startswith(q + "/") for q in resolved if q != p)]


def isolate(root: str, paths: list[str], proc: bool) -> None:
    """Enter new namespaces and pivot into a tmpfs root with read-only binds of ``paths``.

    With ``proc`` (the worker is in a PID namespace of its own), a fresh ``/proc`` for that
    namespace is mounted too, showing only the processes of the worker's own uid: itself.
    """
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _check(_libc.sethostname(b"tilefn", 6), "sethostname")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tilefn", root, "tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    # Scratch first: paths under /tmp (a checkout there, say) are then bound inside it.
    os.mkdir(f"{root}/tmp", 0o1777)
    _mount("scratch", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SCRATCH_OPTIONS)
    for path in paths:
        _bind(path, root + path, writable=False)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink("/" + link):
            os.symlink(os.readlink("/" + link), f"{root}/{link}")
    os.mkdir(f"{root}/dev", 0o755)
    for device in DEVICES:
        _bind(f"/dev/{device}", f"{root}/dev/{device}", writable=True)
    if proc:
        _mount_proc(f"{root}/proc")
    os.mkdir(f"{root}/.old")
    _check(_libc.syscall(SYS_PIVOT_ROOT, root.encode(), f"{root}/.old".encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _mount_proc(target: str) -> None:
    os.mkdir(target, 0o555)
    # Read-only; kernels before 5.8 know neither "invisible" nor subset=pid, and without them
    # /proc/sys and the rest would show: there the filesystem layer reports itself unavailable.
    _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, PROC_OPTIONS)


def _bind(source: str, target: str, *, writable: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        Path(target).touch()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY | MS_NODEV)
    _mount(None, target, None, flags)


def wipe_scratch(paths: tuple[str, ...]) -> None:
    """Empty /tmp for the next task, sparing the read-only binds of paths that live under it."""
    spared = {p.split("/")[2] for p in paths if p.startswith("/tmp/")}
    for entry in os.scandir("/tmp"):
        if entry.name in spared:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(entry.path)
