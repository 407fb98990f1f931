import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tilefn.v1 import udf_service_pb2 as _udf_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GraphStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRAPH_STATUS_UNSPECIFIED: _ClassVar[GraphStatus]
    GRAPH_STATUS_RUNNING: _ClassVar[GraphStatus]
    GRAPH_STATUS_SUCCEEDED: _ClassVar[GraphStatus]
    GRAPH_STATUS_FAILED: _ClassVar[GraphStatus]
    GRAPH_STATUS_CANCELLED: _ClassVar[GraphStatus]

class NodeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATUS_UNSPECIFIED: _ClassVar[NodeStatus]
    NODE_STATUS_WAITING: _ClassVar[NodeStatus]
    NODE_STATUS_QUEUED: _ClassVar[NodeStatus]
    NODE_STATUS_RUNNING: _ClassVar[NodeStatus]
    NODE_STATUS_SUCCEEDED: _ClassVar[NodeStatus]
    NODE_STATUS_FAILED: _ClassVar[NodeStatus]
    NODE_STATUS_PARENT_FAILED: _ClassVar[NodeStatus]
    NODE_STATUS_CANCELLED: _ClassVar[NodeStatus]

class NodeEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_EVENT_KIND_UNSPECIFIED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_STATE: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_QUEUED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_RUNNING: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_SUCCEEDED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_FAILED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_RETRIED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_PARENT_FAILED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_CANCELLED: _ClassVar[NodeEventKind]
    NODE_EVENT_KIND_EXPANDED: _ClassVar[NodeEventKind]
GRAPH_STATUS_UNSPECIFIED: GraphStatus
GRAPH_STATUS_RUNNING: GraphStatus
GRAPH_STATUS_SUCCEEDED: GraphStatus
GRAPH_STATUS_FAILED: GraphStatus
GRAPH_STATUS_CANCELLED: GraphStatus
NODE_STATUS_UNSPECIFIED: NodeStatus
NODE_STATUS_WAITING: NodeStatus
NODE_STATUS_QUEUED: NodeStatus
NODE_STATUS_RUNNING: NodeStatus
NODE_STATUS_SUCCEEDED: NodeStatus
NODE_STATUS_FAILED: NodeStatus
NODE_STATUS_PARENT_FAILED: NodeStatus
NODE_STATUS_CANCELLED: NodeStatus
NODE_EVENT_KIND_UNSPECIFIED: NodeEventKind
NODE_EVENT_KIND_STATE: NodeEventKind
NODE_EVENT_KIND_QUEUED: NodeEventKind
NODE_EVENT_KIND_RUNNING: NodeEventKind
NODE_EVENT_KIND_SUCCEEDED: NodeEventKind
NODE_EVENT_KIND_FAILED: NodeEventKind
NODE_EVENT_KIND_RETRIED: NodeEventKind
NODE_EVENT_KIND_PARENT_FAILED: NodeEventKind
NODE_EVENT_KIND_CANCELLED: NodeEventKind
NODE_EVENT_KIND_EXPANDED: NodeEventKind

class SubmitGraphRequest(_message.Message):
    __slots__ = ("name", "nodes", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNodeSpec]
    options: GraphOptions
    def __init__(self, name: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[GraphNodeSpec, _Mapping]]] = ..., options: _Optional[_Union[GraphOptions, _Mapping]] = ...) -> None: ...

class GraphOptions(_message.Message):
    __slots__ = ("parallelism", "fail_fast", "deadline", "result_ttl")
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    FAIL_FAST_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RESULT_TTL_FIELD_NUMBER: _ClassVar[int]
    parallelism: int
    fail_fast: bool
    deadline: _duration_pb2.Duration
    result_ttl: _duration_pb2.Duration
    def __init__(self, parallelism: _Optional[int] = ..., fail_fast: _Optional[bool] = ..., deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., result_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GraphNodeSpec(_message.Message):
    __slots__ = ("id", "name", "call", "depends_on", "map_over", "retry")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    MAP_OVER_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    call: _udf_service_pb2.ExecuteUdfRequest
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    map_over: str
    retry: RetryPolicy
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., call: _Optional[_Union[_udf_service_pb2.ExecuteUdfRequest, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., map_over: _Optional[str] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("attempts", "backoff", "max_backoff")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    def __init__(self, attempts: _Optional[int] = ..., backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("graph_id", "name", "namespace", "status", "created_at", "finished_at", "error_reason", "error_message", "nodes", "node_counts", "retries")
    class NodeCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    name: str
    namespace: str
    status: GraphStatus
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error_reason: str
    error_message: str
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNode]
    node_counts: _containers.ScalarMap[str, int]
    retries: int
    def __init__(self, graph_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., status: _Optional[_Union[GraphStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[GraphNode, _Mapping]]] = ..., node_counts: _Optional[_Mapping[str, int]] = ..., retries: _Optional[int] = ...) -> None: ...

class GraphNode(_message.Message):
    __slots__ = ("id", "name", "status", "parents", "task_id", "attempts", "result_bytes", "instances", "error_reason", "error_message", "started_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: NodeStatus
    parents: _containers.RepeatedScalarFieldContainer[str]
    task_id: str
    attempts: int
    result_bytes: int
    instances: int
    error_reason: str
    error_message: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[NodeStatus, str]] = ..., parents: _Optional[_Iterable[str]] = ..., task_id: _Optional[str] = ..., attempts: _Optional[int] = ..., result_bytes: _Optional[int] = ..., instances: _Optional[int] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GraphEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[GraphEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[GraphEvent, _Mapping]]] = ...) -> None: ...

class GraphEvent(_message.Message):
    __slots__ = ("graph_id", "node", "kind", "graph_status", "time")
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GRAPH_STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    node: GraphNode
    kind: NodeEventKind
    graph_status: GraphStatus
    time: _timestamp_pb2.Timestamp
    def __init__(self, graph_id: _Optional[str] = ..., node: _Optional[_Union[GraphNode, _Mapping]] = ..., kind: _Optional[_Union[NodeEventKind, str]] = ..., graph_status: _Optional[_Union[GraphStatus, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ("graph_id",)
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    def __init__(self, graph_id: _Optional[str] = ...) -> None: ...

class WatchGraphRequest(_message.Message):
    __slots__ = ("graph_id",)
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    def __init__(self, graph_id: _Optional[str] = ...) -> None: ...

class CancelGraphRequest(_message.Message):
    __slots__ = ("graph_id",)
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    def __init__(self, graph_id: _Optional[str] = ...) -> None: ...

class RetryGraphRequest(_message.Message):
    __slots__ = ("graph_id",)
    GRAPH_ID_FIELD_NUMBER: _ClassVar[int]
    graph_id: str
    def __init__(self, graph_id: _Optional[str] = ...) -> None: ...

class ListGraphsRequest(_message.Message):
    __slots__ = ("status", "namespace", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: GraphStatus
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[GraphStatus, str]] = ..., namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListGraphsResponse(_message.Message):
    __slots__ = ("graphs", "next_page_token")
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    graphs: _containers.RepeatedCompositeFieldContainer[Graph]
    next_page_token: str
    def __init__(self, graphs: _Optional[_Iterable[_Union[Graph, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
