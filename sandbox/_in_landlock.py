"""Runs inside the worker: Landlock, a second filesystem boundary plus TCP and scope limits.

After the worker pivots into its minimal root, Landlock restricts it further, whatever its uid:
read and execute everywhere it can see, write only under /tmp and to /dev/null; no TCP bind or
connect (ABI 4+); no signals to, and no abstract Unix sockets of, processes outside its own
Landlock domain (ABI 6+). Needs no_new_privs first. Reports itself unavailable where the kernel
lacks Landlock.
"""

from __future__ import annotations

import ctypes
import os
import struct

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1, 2, 4, 8
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 16, 32, 64, 128
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 256, 512, 1024, 2048, 4096
REFER, TRUNCATE, IOCTL_DEV = 8192, 16384, 32768
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | MAKE_SOCK | MAKE_FIFO
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable."""
    version = _libc.syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    return max(0, int(version))


def _fs_rights(version: int) -> int:
    rights = READ | WRITE | MAKE_CHAR | MAKE_BLOCK
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(scratch: str = "/tmp") -> None:
    """Apply the ruleset to the calling process (irrevocably); OSError when unavailable."""
    version = abi()
    if version < 1:
        raise OSError(95, "Landlock is not available in this kernel")
    handled = _fs_rights(version)
    net = NET_BIND_TCP | NET_CONNECT_TCP if version >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if version >= 6 else 0
    attr = struct.pack("QQQ", handled, net, scoped)
    size = 8 if version < 4 else (16 if version < 6 else 24)
    ruleset = _call(SYS_CREATE_RULESET, ctypes.c_char_p(attr), size, 0)
    try:
        _allow(ruleset, "/", READ)
        _allow(ruleset, scratch, handled & (READ | WRITE | TRUNCATE | REFER))
        _allow(ruleset, "/dev/null", READ_FILE | WRITE_FILE | (handled & TRUNCATE))
        _call(SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
        rule = struct.pack("=Qi", rights, fd)
        _call(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0)
    finally:
        os.close(fd)


def _call(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock syscall {number}: {os.strerror(err)}")
    return result
