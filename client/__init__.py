"""The tilefn Python client.

    from tilefn.client import Client
    with Client("127.0.0.1:50051") as client:
        client.exec(lambda x: x * 2, 21)          # -> 42
        for batch in client.stream(fn, *args):    # pyarrow.RecordBatch, as they arrive
            ...

Errors are raised as the ``TilefnError`` tree (see ``tilefn.client._exceptions``).
"""

from ._arrays import ArrayInfo, ArrayRead
from ._client import AsyncClient, Client
from ._exceptions import (
    AlreadyExistsError,
    AuthenticationError,
    CancelledError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PythonVersionError,
    ResourceExhaustedError,
    TilefnError,
    UdfError,
    UdfTimeoutError,
    UnavailableError,
    UnsupportedError,
    WorkerCrashedError,
)
from ._registry import UdfInfo
from ._request import Options, Registered, Source
from ._result import AsyncResultStream, Logs, ResultStream, Summary
from ._tasks import AsyncTaskHandle, StoredResult, TaskFailedError, TaskHandle, TaskInfo

__all__ = [
    "AlreadyExistsError",
    "ArrayInfo",
    "ArrayRead",
    "AsyncClient",
    "AsyncResultStream",
    "AsyncTaskHandle",
    "AuthenticationError",
    "CancelledError",
    "Client",
    "InternalError",
    "InvalidRequestError",
    "Logs",
    "NotFoundError",
    "Options",
    "PermissionDeniedError",
    "PythonVersionError",
    "Registered",
    "ResourceExhaustedError",
    "ResultStream",
    "Source",
    "StoredResult",
    "Summary",
    "TaskFailedError",
    "TaskHandle",
    "TaskInfo",
    "TilefnError",
    "UdfError",
    "UdfInfo",
    "UdfTimeoutError",
    "UnavailableError",
    "UnsupportedError",
    "WorkerCrashedError",
]
