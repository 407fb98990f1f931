"""Errors raised on the parent side of the sandbox.

::

    SandboxError
    ├── UdfFailedError            the worker reported the task's failure (and is still usable)
    ├── WorkerDiedError           the worker process exited or was killed mid-task
    ├── ProtocolViolationError    the worker sent a frame that breaks the protocol
    ├── PoolClosedError           the pool is shut down (or its template died and could not restart)
    ├── WorkersUnavailableError   workers keep failing to start (for now)
    └── SandboxUnavailableError   strict mode, and a sandbox layer is missing on this machine

The server maps these to gRPC statuses; the sandbox itself never imports grpc.
"""

from __future__ import annotations

import signal


class SandboxError(Exception):
    """Base of every error the worker pool raises."""


class UdfFailedError(SandboxError):
    """The worker reported that loading, calling or encoding the UDF failed.

    ``reason`` is an ``ErrorReason`` name from the allow-list in ``_protocol.WORKER_REASONS``;
    every text field is bounded and came from the untrusted side, so treat it as data.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        exception_type: str = "",
        traceback: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exception_type = exception_type
        self.traceback = traceback
        self.metadata = metadata or {}


class WorkerDiedError(SandboxError):
    """The worker exited before finishing its task."""

    def __init__(self, pid: int, returncode: int | None, *, out_of_memory: bool = False) -> None:
        self.pid = pid
        self.returncode = returncode
        self.out_of_memory = out_of_memory
        why = " (out of memory)" if out_of_memory else ""
        super().__init__(f"the worker process (pid {pid}) {describe_exit(returncode)}{why}")


class ProtocolViolationError(SandboxError):
    """The worker broke the parent/worker protocol; it is killed, never trusted again."""


class PoolClosedError(SandboxError):
    """The pool takes no more work."""


class WorkersUnavailableError(SandboxError):
    """Workers keep failing to start; the pool fails work fast until one starts again."""


def describe_exit(returncode: int | None) -> str:
    """Say how a process ended, from a ``subprocess``-style return code."""
    if returncode is None:
        return "exited (status unknown)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class SandboxUnavailableError(SandboxError):
    """The pool cannot provide the isolation its configuration requires."""
