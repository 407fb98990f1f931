"""Runs inside the worker: a seccomp-BPF filter that shrinks the kernel surface a UDF can reach.

Default allow with a deny list (EPERM), built per worker in microseconds because it embeds the
worker's own pid (signals may only target the worker itself):

- no new programs or processes: execve/execveat, fork/vfork, clone without CLONE_THREAD
  (threads stay allowed); clone3 answers ENOSYS so libc falls back to clone;
- no tracing or peeking: ptrace, process_vm_*, pidfd_*, kcmp;
- no kernel attack surface: bpf, perf_event_open, userfaultfd, io_uring_*, keyrings;
- no escaping the view: unshare, setns, mount and the new mount API, chroot, pivot_root;
- no machine control: modules, kexec, reboot, swap, clocks, iopl/ioperm, syslog, acct;
- no System V IPC or POSIX message queues;
- sockets and socketpairs of AF_UNIX only (no inet, netlink, packet, vsock);
- kill/tkill/tgkill only of the worker itself; prlimit64 only of itself;
- x86-64 native calls only (x32 and i386 entry points are refused).

x86-64 only for now; on other machines the layer reports itself unavailable.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = 317
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
EPERM, ENOSYS = 1, 38
AF_UNIX = 1
CLONE_THREAD = 0x10000

OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16

DENIED = {
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "keyctl": 250, "add_key": 248, "request_key": 249,
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "iopl": 172, "ioperm": 173, "syslog": 103, "acct": 163, "quotactl": 179,
    "vhangup": 153, "personality": 135, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "lookup_dcookie": 212,
    "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
    "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "mq_open": 240, "mq_unlink": 241,
}  # fmt: skip
SOCKET, SOCKETPAIR, CLONE, CLONE3 = 41, 53, 56, 435
KILL, TKILL, TGKILL, PRLIMIT64 = 62, 200, 234, 302


def available() -> bool:
    """True where this filter can be built (x86-64 Linux)."""
    return platform.machine() == "x86_64"


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _errno(number: int) -> bytes:
    return _insn(RET_K, 0x00050000 | number)


def _arg0_is(syscall: int, allowed: list[int]) -> list[bytes]:
    """Allow ``syscall`` only when its first argument (low 32 bits) is one of ``allowed``."""
    body = [_insn(JEQ_K, syscall, 0, 2 + 2 * len(allowed)), _insn(LD_W_ABS, OFFSET_ARG0)]
    for value in allowed:
        body += [_insn(JEQ_K, value, 0, 1), _insn(RET_K, RET_ALLOW)]
    return [*body, _errno(EPERM)]


def build(own_pid: int) -> bytes:
    """The filter program for a worker whose pid is own_pid."""
    program = [
        _insn(LD_W_ABS, OFFSET_ARCH),
        _insn(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        _insn(RET_K, RET_KILL_PROCESS),
        _insn(LD_W_ABS, OFFSET_NR),
        _insn(JGE_K, X32_SYSCALL_BIT, 0, 1),
        _errno(EPERM),
        _insn(JEQ_K, CLONE3, 0, 1),
        _errno(ENOSYS),
    ]
    for number in sorted(DENIED.values()):
        program += [_insn(JEQ_K, number, 0, 1), _errno(EPERM)]
    # Clone: threads (CLONE_THREAD set) only.
    program += [
        _insn(JEQ_K, CLONE, 0, 4),
        _insn(LD_W_ABS, OFFSET_ARG0),
        _insn(JSET_K, CLONE_THREAD, 0, 1),
        _insn(RET_K, RET_ALLOW),
        _errno(EPERM),
    ]
    for checked, allowed in (
        (SOCKET, [AF_UNIX]),
        (SOCKETPAIR, [AF_UNIX]),
        (KILL, [own_pid, 0]),
        (TKILL, [own_pid]),
        (TGKILL, [own_pid]),
        (PRLIMIT64, [0, own_pid]),
    ):
        # Each check ends with a return, so the accumulator must be reloaded after it.
        program += [_insn(LD_W_ABS, OFFSET_NR), *_arg0_is(checked, allowed)]
    program.append(_insn(RET_K, RET_ALLOW))
    return b"".join(program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Load the filter into the calling thread (needs no_new_privs already set)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
