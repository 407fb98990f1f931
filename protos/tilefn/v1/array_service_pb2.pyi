from tilefn.v1 import udf_pb2 as _udf_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShareArrayRequest(_message.Message):
    __slots__ = ("uri", "grantee")
    URI_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    grantee: str
    def __init__(self, uri: _Optional[str] = ..., grantee: _Optional[str] = ...) -> None: ...

class ArraySharing(_message.Message):
    __slots__ = ("uri", "shared_with")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    uri: str
    shared_with: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, uri: _Optional[str] = ..., shared_with: _Optional[_Iterable[str]] = ...) -> None: ...

class ListArraysRequest(_message.Message):
    __slots__ = ("namespace", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListArraysResponse(_message.Message):
    __slots__ = ("arrays", "next_page_token")
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    arrays: _containers.RepeatedCompositeFieldContainer[ArrayInfo]
    next_page_token: str
    def __init__(self, arrays: _Optional[_Iterable[_Union[ArrayInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ArrayInfo(_message.Message):
    __slots__ = ("uri", "namespace", "sparse")
    URI_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    namespace: str
    sparse: bool
    def __init__(self, uri: _Optional[str] = ..., namespace: _Optional[str] = ..., sparse: _Optional[bool] = ...) -> None: ...

class GetArraySchemaRequest(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class GetArraySchemaResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: ArraySchema
    def __init__(self, schema: _Optional[_Union[ArraySchema, _Mapping]] = ...) -> None: ...

class ArraySchema(_message.Message):
    __slots__ = ("uri", "sparse", "dimensions", "attributes", "cell_order", "tile_order", "allows_duplicates")
    URI_FIELD_NUMBER: _ClassVar[int]
    SPARSE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CELL_ORDER_FIELD_NUMBER: _ClassVar[int]
    TILE_ORDER_FIELD_NUMBER: _ClassVar[int]
    ALLOWS_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sparse: bool
    dimensions: _containers.RepeatedCompositeFieldContainer[Dimension]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    cell_order: str
    tile_order: str
    allows_duplicates: bool
    def __init__(self, uri: _Optional[str] = ..., sparse: _Optional[bool] = ..., dimensions: _Optional[_Iterable[_Union[Dimension, _Mapping]]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., cell_order: _Optional[str] = ..., tile_order: _Optional[str] = ..., allows_duplicates: _Optional[bool] = ...) -> None: ...

class Dimension(_message.Message):
    __slots__ = ("name", "type", "domain_start", "domain_end", "var")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_START_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_END_FIELD_NUMBER: _ClassVar[int]
    VAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    domain_start: _udf_pb2.Scalar
    domain_end: _udf_pb2.Scalar
    var: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., domain_start: _Optional[_Union[_udf_pb2.Scalar, _Mapping]] = ..., domain_end: _Optional[_Union[_udf_pb2.Scalar, _Mapping]] = ..., var: _Optional[bool] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("name", "type", "nullable", "var")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    VAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    nullable: bool
    var: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., nullable: _Optional[bool] = ..., var: _Optional[bool] = ...) -> None: ...
