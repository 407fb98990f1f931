"""The one place where server-side failures become gRPC statuses.

Every non-OK status carries a ``google.rpc.Status`` with one ``ErrorInfo`` (reason = an
``ErrorReason`` name, domain "tilefn", metadata = the dynamic values), for a UDF's own
exception a ``DebugInfo`` with the remote traceback, and for a refusal worth retrying (a full
queue) a ``RetryInfo`` with the delay to wait. The code for each reason is fixed by
``CODES`` below and documented in docs/errors.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from tilefn.sandbox import (
    PoolClosedError,
    ProtocolViolationError,
    UdfFailedError,
    WorkerDiedError,
    WorkersUnavailableError,
    describe_exit,
)
from tilefn.v1 import error_pb2, udf_service_pb2

log = logging.getLogger(__name__)

DOMAIN = "tilefn"
TASK_ID_KEY = "tilefn-task-id"
R = error_pb2.ErrorReason
C = grpc.StatusCode
#: A client drops trailing metadata past its limit (16 KiB by default in gRPC core), and the
#: status with it: it then sees RESOURCE_EXHAUSTED instead of the failure. What a status carries
#: is cut to stay well under that (in characters; message and traceback are sent twice).
MAX_STATUS_MESSAGE = 1024
MAX_STATUS_TRACEBACK = 2048  # its end: the exception and the innermost frames
MAX_STATUS_LOGS = 1024  # the last characters printed
MAX_STATUS_METADATA = 256  # per value

CODES: dict[int, grpc.StatusCode] = {
    R.ERROR_REASON_UDF_MISSING: C.INVALID_ARGUMENT,
    R.ERROR_REASON_UDF_SOURCE_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_UDF_ENTRY_POINT_MISSING: C.INVALID_ARGUMENT,
    R.ERROR_REASON_UDF_PICKLE_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_PYTHON_VERSION_MISMATCH: C.FAILED_PRECONDITION,
    R.ERROR_REASON_ARGUMENT_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_REQUEST_TOO_LARGE: C.INVALID_ARGUMENT,
    R.ERROR_REASON_OPTION_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_UDF_RAISED: C.UNKNOWN,
    R.ERROR_REASON_RESULT_TYPE_UNSUPPORTED: C.INVALID_ARGUMENT,
    R.ERROR_REASON_TIMEOUT: C.DEADLINE_EXCEEDED,
    R.ERROR_REASON_WORKER_DIED: C.ABORTED,
    R.ERROR_REASON_WORKER_PROTOCOL_VIOLATION: C.ABORTED,
    R.ERROR_REASON_NOT_IMPLEMENTED: C.UNIMPLEMENTED,
    R.ERROR_REASON_SHUTTING_DOWN: C.UNAVAILABLE,
    R.ERROR_REASON_WORKERS_UNAVAILABLE: C.UNAVAILABLE,
    R.ERROR_REASON_INTERNAL: C.INTERNAL,
    R.ERROR_REASON_ARRAY_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_ARRAY_URI_REFUSED: C.PERMISSION_DENIED,
    R.ERROR_REASON_ARRAY_NAME_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_ARRAY_RANGE_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_ARRAY_ATTRIBUTE_UNKNOWN: C.INVALID_ARGUMENT,
    R.ERROR_REASON_ARRAY_CONDITION_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_ARRAY_READ_TOO_LARGE: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_ARRAY_READ_FAILED: C.UNAVAILABLE,
    R.ERROR_REASON_RESULT_TOO_LARGE: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_MEMORY_LIMIT: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_CPU_LIMIT: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_TOKEN_MISSING: C.UNAUTHENTICATED,
    R.ERROR_REASON_TOKEN_INVALID: C.UNAUTHENTICATED,
    R.ERROR_REASON_TOKEN_EXPIRED: C.UNAUTHENTICATED,
    R.ERROR_REASON_TOKEN_REVOKED: C.UNAUTHENTICATED,
    R.ERROR_REASON_SCOPE_MISSING: C.PERMISSION_DENIED,
    R.ERROR_REASON_PERMISSION_DENIED: C.PERMISSION_DENIED,
    R.ERROR_REASON_UDF_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_UDF_VERSION_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_UDF_EXISTS: C.ALREADY_EXISTS,
    R.ERROR_REASON_UDF_NAME_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_NAMESPACE_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_NAMESPACE_EXISTS: C.ALREADY_EXISTS,
    R.ERROR_REASON_NAMESPACE_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_TOKEN_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_QUEUE_FULL: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_TASK_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_RESULT_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_RESULT_QUOTA_EXCEEDED: C.RESOURCE_EXHAUSTED,
    R.ERROR_REASON_SERVER_RESTARTED: C.ABORTED,
    R.ERROR_REASON_TASK_CANCELLED: C.CANCELLED,
    R.ERROR_REASON_GRAPH_NOT_FOUND: C.NOT_FOUND,
    R.ERROR_REASON_GRAPH_INVALID: C.INVALID_ARGUMENT,
    R.ERROR_REASON_PARENT_FAILED: C.FAILED_PRECONDITION,
    R.ERROR_REASON_ITEMS_INVALID: C.FAILED_PRECONDITION,
    R.ERROR_REASON_GRAPH_DEADLINE: C.DEADLINE_EXCEEDED,
    R.ERROR_REASON_GRAPH_NOT_RETRYABLE: C.FAILED_PRECONDITION,
    R.ERROR_REASON_GRAPH_STOPPED: C.CANCELLED,
}


class ServiceError(Exception):
    """A failure with a reason; raised anywhere in the server, mapped here."""

    def __init__(self, reason: int, message: str, *, traceback: str = "", **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.traceback = traceback
        self.metadata = metadata
        #: Seconds after which retrying may succeed, sent as a google.rpc.RetryInfo detail.
        self.retry_after: float | None = None
        #: What the UDF printed, sent in the status details (unary calls have no logs message).
        self.logs: udf_service_pb2.TaskLogs | None = None

    @property
    def code(self) -> grpc.StatusCode:
        return CODES[self.reason]


@dataclass(frozen=True)
class RichStatus(grpc.Status):
    """A grpc.Status with google.rpc.Status details in the trailing metadata."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


#: Pool errors that reach the client with their own message.
POOL_REASONS: tuple[tuple[type[Exception], int], ...] = (
    (WorkersUnavailableError, R.ERROR_REASON_WORKERS_UNAVAILABLE),
    (PoolClosedError, R.ERROR_REASON_SHUTTING_DOWN),
)


def to_service_error(exc: BaseException) -> ServiceError:
    """Translate any exception into a ServiceError (unknown ones are INTERNAL and logged)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, UdfFailedError):
        return ServiceError(
            error_pb2.ErrorReason.Value(exc.reason),
            exc.message,
            traceback=exc.traceback,
            **exc.metadata,
        )
    if isinstance(exc, WorkerDiedError):
        return _worker_died(exc)
    if isinstance(exc, ProtocolViolationError):
        return ServiceError(
            R.ERROR_REASON_WORKER_PROTOCOL_VIOLATION, f"the worker broke the protocol: {exc}"
        )
    for kind, reason in POOL_REASONS:
        if isinstance(exc, kind):
            return ServiceError(reason, str(exc))
    log.exception("internal error", exc_info=exc)
    return ServiceError(R.ERROR_REASON_INTERNAL, "internal server error; see the server log")


def _worker_died(exc: WorkerDiedError) -> ServiceError:
    if exc.returncode == -signal.SIGXCPU:
        return ServiceError(
            R.ERROR_REASON_CPU_LIMIT, "the UDF used more CPU time than its cpu_time limit"
        )
    if exc.out_of_memory:
        return ServiceError(
            R.ERROR_REASON_MEMORY_LIMIT,
            "the UDF used more memory than its worker's limit and was stopped",
        )
    return ServiceError(
        R.ERROR_REASON_WORKER_DIED,
        f"the worker running the UDF {describe_exit(exc.returncode)} before finishing",
        returncode=str(exc.returncode),
    )


def to_status(error: ServiceError, task_id: str = "") -> RichStatus:
    """Build the status (ErrorInfo; DebugInfo for a traceback; RetryInfo for a retry hint)."""
    metadata = {key: _head(value, MAX_STATUS_METADATA) for key, value in error.metadata.items()}
    if task_id:
        metadata["task_id"] = task_id
    info = error_details_pb2.ErrorInfo(
        reason=error_pb2.ErrorReason.Name(error.reason), domain=DOMAIN, metadata=metadata
    )
    details = [_pack(info)]
    if error.traceback:
        traceback = _tail(error.traceback, MAX_STATUS_TRACEBACK)
        debug = error_details_pb2.DebugInfo(stack_entries=traceback.splitlines(), detail=traceback)
        details.append(_pack(debug))
    if error.retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(round(error.retry_after * 1e9))
        details.append(_pack(retry))
    if error.logs is not None:
        logs = udf_service_pb2.TaskLogs()
        logs.CopyFrom(error.logs)
        logs.text = error.logs.text[-MAX_STATUS_LOGS:]
        logs.truncated |= len(logs.text) < len(error.logs.text)
        details.append(_pack(logs))
    message = _head(error.message, MAX_STATUS_MESSAGE)
    status = status_pb2.Status(code=error.code.value[0], message=message, details=details)
    trailing: tuple[tuple[str, str | bytes], ...] = (
        ("grpc-status-details-bin", status.SerializeToString()),
    )
    if task_id:
        trailing += ((TASK_ID_KEY, task_id),)
    return RichStatus(error.code, message, trailing)


def _head(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 40] + f" ... [{len(text) - limit + 40} chars cut]"


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit + 40} chars cut] ...\n" + text[-(limit - 40) :]


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


Handler = TypeVar("Handler", bound=Callable[..., AsyncIterator[Any]])


def status_mapped(method: Handler) -> Handler:
    """Wrap a server-streaming handler so every failure leaves as a rich status."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in method(self, request, context):
                yield response
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return wrapper  # type: ignore[return-value]


Unary = TypeVar("Unary", bound=Callable[..., Awaitable[Any]])


def unary_status_mapped(method: Unary) -> Unary:
    """Wrap a unary handler so every failure leaves as a rich status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return wrapper  # type: ignore[return-value]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    error = to_service_error(exc)
    await context.abort_with_status(to_status(error, _task_id(context)))  # type: ignore[attr-defined]


def _task_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.trailing_metadata() or ():
        if key == TASK_ID_KEY:
            return str(value)
    return ""
