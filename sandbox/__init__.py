"""Sandboxed worker processes that run UDFs.

Trust sides: modules named ``_in_*`` run inside the template or a worker (they load, compile and
run client code); the rest run in the server and treat everything a worker sends as hostile.
This package never imports grpc.
"""

from ._errors import (
    PoolClosedError,
    ProtocolViolationError,
    SandboxError,
    SandboxUnavailableError,
    UdfFailedError,
    WorkerDiedError,
    WorkersUnavailableError,
    describe_exit,
)
from ._pool import PoolConfig, PoolStats, WorkerPool
from ._protocol import ArgSpec, TaskSpec, UdfKind
from ._worker import ArrayBatch, BatchProvider, LogPart, TaskLogs, TaskSummary, WorkerHandle

__all__ = [
    "ArgSpec",
    "ArrayBatch",
    "BatchProvider",
    "LogPart",
    "PoolClosedError",
    "PoolConfig",
    "PoolStats",
    "ProtocolViolationError",
    "SandboxError",
    "SandboxUnavailableError",
    "TaskLogs",
    "TaskSpec",
    "TaskSummary",
    "UdfFailedError",
    "UdfKind",
    "WorkerDiedError",
    "WorkerHandle",
    "WorkerPool",
    "WorkersUnavailableError",
    "describe_exit",
]
