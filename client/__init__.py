"""The tilefn Python client.

    from tilefn.client import Client
    with Client("127.0.0.1:50051") as client:
        client.exec(lambda x: x * 2, 21)          # -> 42
        for batch in client.stream(fn, *args):    # pyarrow.RecordBatch, as they arrive
            ...

Task graphs (docs/graphs.md): ``client.graph()`` to build and run one, or ``@delayed``
functions and ``.compute(client)``.

Errors are raised as the ``TilefnError`` tree (see ``tilefn.client._exceptions``).
"""

from ._arrays import ArrayInfo, ArrayRead
from ._client import AsyncClient, Client
from ._delayed import Delayed, DelayedFunction, compute, delayed
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
from ._graph import Graph, Node
from ._graph_async import AsyncGraph, AsyncNode
from ._graph_spec import Retry
from ._graph_state import GraphEvent, GraphInfo, NodeFailedError, NodeInfo
from ._registry import UdfInfo
from ._request import Options, Registered, Source
from ._result import AsyncResultStream, Logs, ResultStream, Summary
from ._tasks import AsyncTaskHandle, StoredResult, TaskFailedError, TaskHandle, TaskInfo

__all__ = [
    "AlreadyExistsError",
    "ArrayInfo",
    "ArrayRead",
    "AsyncClient",
    "AsyncGraph",
    "AsyncNode",
    "AsyncResultStream",
    "AsyncTaskHandle",
    "AuthenticationError",
    "CancelledError",
    "Client",
    "Delayed",
    "DelayedFunction",
    "Graph",
    "GraphEvent",
    "GraphInfo",
    "InternalError",
    "InvalidRequestError",
    "Logs",
    "Node",
    "NodeFailedError",
    "NodeInfo",
    "NotFoundError",
    "Options",
    "PermissionDeniedError",
    "PythonVersionError",
    "Registered",
    "ResourceExhaustedError",
    "ResultStream",
    "Retry",
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
    "compute",
    "delayed",
]
