import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Layout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYOUT_UNSPECIFIED: _ClassVar[Layout]
    LAYOUT_ROW_MAJOR: _ClassVar[Layout]
    LAYOUT_COL_MAJOR: _ClassVar[Layout]
    LAYOUT_GLOBAL_ORDER: _ClassVar[Layout]
    LAYOUT_UNORDERED: _ClassVar[Layout]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_UNSPECIFIED: _ClassVar[Compression]
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_LZ4_FRAME: _ClassVar[Compression]
    COMPRESSION_ZSTD: _ClassVar[Compression]
LAYOUT_UNSPECIFIED: Layout
LAYOUT_ROW_MAJOR: Layout
LAYOUT_COL_MAJOR: Layout
LAYOUT_GLOBAL_ORDER: Layout
LAYOUT_UNORDERED: Layout
COMPRESSION_UNSPECIFIED: Compression
COMPRESSION_NONE: Compression
COMPRESSION_LZ4_FRAME: Compression
COMPRESSION_ZSTD: Compression

class UdfSpec(_message.Message):
    __slots__ = ("pickled", "source", "registered")
    PICKLED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    pickled: PickledValue
    source: SourceUdf
    registered: str
    def __init__(self, pickled: _Optional[_Union[PickledValue, _Mapping]] = ..., source: _Optional[_Union[SourceUdf, _Mapping]] = ..., registered: _Optional[str] = ...) -> None: ...

class PickledValue(_message.Message):
    __slots__ = ("data", "python_version")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    python_version: str
    def __init__(self, data: _Optional[bytes] = ..., python_version: _Optional[str] = ...) -> None: ...

class SourceUdf(_message.Message):
    __slots__ = ("text", "entry_point")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    text: str
    entry_point: str
    def __init__(self, text: _Optional[str] = ..., entry_point: _Optional[str] = ...) -> None: ...

class Argument(_message.Message):
    __slots__ = ("json", "arrow_ipc", "pickled", "array", "stored_result", "list", "map", "node", "stored_item")
    JSON_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    PICKLED_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    STORED_RESULT_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STORED_ITEM_FIELD_NUMBER: _ClassVar[int]
    json: str
    arrow_ipc: bytes
    pickled: PickledValue
    array: ArrayInput
    stored_result: str
    list: ArgumentList
    map: ArgumentMap
    node: str
    stored_item: StoredItem
    def __init__(self, json: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ..., pickled: _Optional[_Union[PickledValue, _Mapping]] = ..., array: _Optional[_Union[ArrayInput, _Mapping]] = ..., stored_result: _Optional[str] = ..., list: _Optional[_Union[ArgumentList, _Mapping]] = ..., map: _Optional[_Union[ArgumentMap, _Mapping]] = ..., node: _Optional[str] = ..., stored_item: _Optional[_Union[StoredItem, _Mapping]] = ...) -> None: ...

class ArgumentList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Argument]
    def __init__(self, items: _Optional[_Iterable[_Union[Argument, _Mapping]]] = ...) -> None: ...

class ArgumentMap(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ArgumentEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ArgumentEntry, _Mapping]]] = ...) -> None: ...

class ArgumentEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: Argument
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Argument, _Mapping]] = ...) -> None: ...

class StoredItem(_message.Message):
    __slots__ = ("task_id", "index")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    index: int
    def __init__(self, task_id: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class ArrayInput(_message.Message):
    __slots__ = ("uri", "ranges", "attributes", "layout", "condition", "batched")
    URI_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    BATCHED_FIELD_NUMBER: _ClassVar[int]
    uri: str
    ranges: _containers.RepeatedCompositeFieldContainer[DimensionRanges]
    attributes: _containers.RepeatedScalarFieldContainer[str]
    layout: Layout
    condition: str
    batched: bool
    def __init__(self, uri: _Optional[str] = ..., ranges: _Optional[_Iterable[_Union[DimensionRanges, _Mapping]]] = ..., attributes: _Optional[_Iterable[str]] = ..., layout: _Optional[_Union[Layout, str]] = ..., condition: _Optional[str] = ..., batched: _Optional[bool] = ...) -> None: ...

class DimensionRanges(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[Range]
    def __init__(self, ranges: _Optional[_Iterable[_Union[Range, _Mapping]]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: Scalar
    end: Scalar
    def __init__(self, start: _Optional[_Union[Scalar, _Mapping]] = ..., end: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...

class Scalar(_message.Message):
    __slots__ = ("int64_value", "uint64_value", "double_value", "string_value", "datetime_value")
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATETIME_VALUE_FIELD_NUMBER: _ClassVar[int]
    int64_value: int
    uint64_value: int
    double_value: float
    string_value: str
    datetime_value: str
    def __init__(self, int64_value: _Optional[int] = ..., uint64_value: _Optional[int] = ..., double_value: _Optional[float] = ..., string_value: _Optional[str] = ..., datetime_value: _Optional[str] = ...) -> None: ...

class ExecutionOptions(_message.Message):
    __slots__ = ("timeout", "max_chunk_bytes", "compression", "max_result_bytes", "memory_bytes", "cpu_time", "max_log_bytes", "store_result", "result_ttl")
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORE_RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_TTL_FIELD_NUMBER: _ClassVar[int]
    timeout: _duration_pb2.Duration
    max_chunk_bytes: int
    compression: Compression
    max_result_bytes: int
    memory_bytes: int
    cpu_time: _duration_pb2.Duration
    max_log_bytes: int
    store_result: bool
    result_ttl: _duration_pb2.Duration
    def __init__(self, timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_chunk_bytes: _Optional[int] = ..., compression: _Optional[_Union[Compression, str]] = ..., max_result_bytes: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_log_bytes: _Optional[int] = ..., store_result: _Optional[bool] = ..., result_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
