"""Load a Kubernetes (OCI) seccomp profile with libseccomp, then exec a command under it.

``python tests/pod_seccomp.py PROFILE.json COMMAND...``: what runc does with a Localhost
profile, for tests/test_deploy.py. The caller must have set no_new_privs (or hold
CAP_SYS_ADMIN). Supports the subset the tilefn profile uses: ALLOW and ERRNO actions and
argument comparisons.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

ACT_ALLOW = 0x7FFF0000
ACT_ERRNO = 0x00050000
#: enum scmp_compare
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_EQ": 4, "SCMP_CMP_MASKED_EQ": 7}


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def action(rule: dict[str, Any]) -> int:
    if rule["action"] == "SCMP_ACT_ALLOW":
        return ACT_ALLOW
    if rule["action"] == "SCMP_ACT_ERRNO":
        return ACT_ERRNO | int(rule.get("errnoRet", 1))
    raise ValueError(f"unsupported action {rule['action']}")


def load(profile: dict[str, Any]) -> None:
    """Install ``profile`` on the calling thread (and, through exec, its command)."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)
    ]  # fmt: skip
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    context = lib.seccomp_init(ctypes.c_uint32(action({"action": profile["defaultAction"]})))
    for rule in profile["syscalls"]:
        args = [
            ArgCmp(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0))
            for a in rule.get("args", [])
        ]
        for name in rule["names"]:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                raise ValueError(f"unknown system call {name}")
            array = (ArgCmp * len(args))(*args)
            if lib.seccomp_rule_add_array(context, action(rule), number, len(args), array) < 0:
                raise OSError(f"cannot add the rule for {name}")
    if lib.seccomp_load(context) < 0:
        raise OSError("seccomp_load failed")


if __name__ == "__main__":
    load(json.loads(Path(sys.argv[1]).read_text()))
    os.execv(sys.argv[2], sys.argv[2:])
