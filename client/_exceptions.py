"""The client's exception tree, and the one place that turns gRPC errors into it.

::

    TilefnError                      any failed call (code, reason, metadata, task_id)
    ├── InvalidRequestError          INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
    │   └── PythonVersionError       a pickle from a Python minor version the workers don't run
    ├── UdfError                     UNKNOWN + ERROR_REASON_UDF_RAISED: the UDF raised; see
    │                                exception_type and remote_traceback
    ├── UdfTimeoutError              DEADLINE_EXCEEDED: the UDF or the call ran out of time
    ├── CancelledError               CANCELLED
    ├── WorkerCrashedError           ABORTED: the worker died or misbehaved while running the UDF
    ├── ResourceExhaustedError       RESOURCE_EXHAUSTED: a limit was hit; may succeed later
    │                                (a full queue says when: retry_after)
    ├── UnavailableError             UNAVAILABLE: server unreachable or shutting down; retry
    ├── UnsupportedError             UNIMPLEMENTED: the server does not offer this yet
    ├── AuthenticationError          UNAUTHENTICATED
    ├── PermissionDeniedError        PERMISSION_DENIED
    ├── NotFoundError                NOT_FOUND
    ├── AlreadyExistsError           ALREADY_EXISTS
    └── InternalError                INTERNAL and anything else: a server bug; report it

The reason names come from the ``tilefn.v1.ErrorReason`` enum (docs/errors.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from tilefn.v1 import udf_service_pb2

DETAILS_KEY = "grpc-status-details-bin"
TASK_ID_KEY = "tilefn-task-id"


class TilefnError(Exception):
    """A tilefn call failed. ``code`` says whether retrying can help; ``reason`` says why."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        task_id: str = "",
        remote_traceback: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata = metadata or {}
        self.task_id = task_id
        self.remote_traceback = remote_traceback
        #: Seconds the server suggests waiting before retrying (its google.rpc.RetryInfo),
        #: or None when it gave no hint.
        self.retry_after = retry_after
        #: What the UDF printed before it failed (the server's tail of it), when it printed.
        self.logs = ""

    def __str__(self) -> str:
        text = f"{self.message} [{self.code.name}"
        text += f" {self.reason}]" if self.reason else "]"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text


class InvalidRequestError(TilefnError):
    """The request cannot succeed as sent."""


class PythonVersionError(InvalidRequestError):
    """A pickled UDF or argument came from another Python minor version than the workers'."""


class UdfError(TilefnError):
    """The UDF raised an exception on the server."""

    @property
    def exception_type(self) -> str:
        """The qualified name of the exception the UDF raised, e.g. 'ZeroDivisionError'."""
        return self.metadata.get("exception_type", "")


class UdfTimeoutError(TilefnError):
    """The UDF ran past its timeout, or the call past its deadline."""


class CancelledError(TilefnError):
    """The call was cancelled."""


class WorkerCrashedError(TilefnError):
    """The worker process died or broke protocol while running the UDF."""


class ResourceExhaustedError(TilefnError):
    """A server limit was reached."""


class UnavailableError(TilefnError):
    """The server cannot take the call now; retrying later may succeed."""


class UnsupportedError(TilefnError):
    """The server does not implement what the request needs."""


class AuthenticationError(TilefnError):
    """The credentials are missing or invalid."""


class PermissionDeniedError(TilefnError):
    """The caller may not do this."""


class NotFoundError(TilefnError):
    """The named thing does not exist (or is not visible to the caller)."""


class AlreadyExistsError(TilefnError):
    """The thing to create exists already."""


class InternalError(TilefnError):
    """The server failed; this is a bug."""


_BY_CODE: dict[grpc.StatusCode, type[TilefnError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UdfTimeoutError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.ABORTED: WorkerCrashedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNIMPLEMENTED: UnsupportedError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
}
_BY_REASON: dict[str, type[TilefnError]] = {
    "ERROR_REASON_UDF_RAISED": UdfError,
    "ERROR_REASON_PYTHON_VERSION_MISMATCH": PythonVersionError,
}


def from_rpc_error(error: grpc.RpcError) -> TilefnError:
    """Translate a gRPC error (sync or asyncio) into the matching TilefnError."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    trailing = _pairs(error.trailing_metadata())
    rich = _rich_details(trailing.get(DETAILS_KEY))
    task_id = rich.metadata.pop("task_id", "") or str(trailing.get(TASK_ID_KEY, ""))
    kind = _BY_REASON.get(rich.reason) or _BY_CODE.get(code, InternalError)
    if code == grpc.StatusCode.UNKNOWN and not rich.reason:
        kind = InternalError
    failure = kind(
        details or code.name,
        code=code,
        reason=rich.reason,
        metadata=rich.metadata,
        task_id=task_id,
        remote_traceback=rich.traceback,
        retry_after=rich.retry_after,
    )
    failure.logs = rich.logs
    return failure


def _pairs(metadata: Iterable[Any] | None) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in metadata or ():
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        pairs[key] = value
    return pairs


@dataclass
class _Details:
    """What a google.rpc.Status blob says beyond the code and message."""

    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    traceback: str = ""
    logs: str = ""
    retry_after: float | None = None


def _rich_details(blob: bytes | None) -> _Details:
    """Reason, metadata, remote traceback, logs and retry delay from a google.rpc.Status blob."""
    found = _Details()
    if not blob:
        return found
    for detail in status_pb2.Status.FromString(blob).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found.reason, found.metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.DebugInfo.DESCRIPTOR):
            debug = error_details_pb2.DebugInfo()
            detail.Unpack(debug)
            found.traceback = debug.detail
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found.retry_after = retry.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(udf_service_pb2.TaskLogs.DESCRIPTOR):  # CallUdf failures carry them
            printed = udf_service_pb2.TaskLogs()
            detail.Unpack(printed)
            found.logs = printed.text
    return found
