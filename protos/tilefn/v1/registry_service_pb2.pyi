import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tilefn.v1 import udf_pb2 as _udf_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParameterKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETER_KIND_UNSPECIFIED: _ClassVar[ParameterKind]
    PARAMETER_KIND_POSITIONAL_ONLY: _ClassVar[ParameterKind]
    PARAMETER_KIND_KEYWORD_ONLY: _ClassVar[ParameterKind]
    PARAMETER_KIND_VAR_POSITIONAL: _ClassVar[ParameterKind]
    PARAMETER_KIND_VAR_KEYWORD: _ClassVar[ParameterKind]
PARAMETER_KIND_UNSPECIFIED: ParameterKind
PARAMETER_KIND_POSITIONAL_ONLY: ParameterKind
PARAMETER_KIND_KEYWORD_ONLY: ParameterKind
PARAMETER_KIND_VAR_POSITIONAL: ParameterKind
PARAMETER_KIND_VAR_KEYWORD: ParameterKind

class UdfDefinition(_message.Message):
    __slots__ = ("source", "entry_point", "pickled", "description", "tags", "parameters")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    PICKLED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    source: str
    entry_point: str
    pickled: _udf_pb2.PickledValue
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    def __init__(self, source: _Optional[str] = ..., entry_point: _Optional[str] = ..., pickled: _Optional[_Union[_udf_pb2.PickledValue, _Mapping]] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "kind", "annotation", "has_default", "default_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    HAS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ParameterKind
    annotation: str
    has_default: bool
    default_json: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ParameterKind, str]] = ..., annotation: _Optional[str] = ..., has_default: _Optional[bool] = ..., default_json: _Optional[str] = ...) -> None: ...

class RegisteredUdf(_message.Message):
    __slots__ = ("name", "namespace", "version", "latest_version", "created_at", "created_by", "python_version", "definition", "shared_with", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    version: int
    latest_version: int
    created_at: _timestamp_pb2.Timestamp
    created_by: str
    python_version: str
    definition: UdfDefinition
    shared_with: _containers.RepeatedScalarFieldContainer[str]
    digest: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., version: _Optional[int] = ..., latest_version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., python_version: _Optional[str] = ..., definition: _Optional[_Union[UdfDefinition, _Mapping]] = ..., shared_with: _Optional[_Iterable[str]] = ..., digest: _Optional[str] = ...) -> None: ...

class RegisterUdfRequest(_message.Message):
    __slots__ = ("namespace", "name", "definition")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    definition: UdfDefinition
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., definition: _Optional[_Union[UdfDefinition, _Mapping]] = ...) -> None: ...

class UpdateUdfRequest(_message.Message):
    __slots__ = ("name", "definition")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    definition: UdfDefinition
    def __init__(self, name: _Optional[str] = ..., definition: _Optional[_Union[UdfDefinition, _Mapping]] = ...) -> None: ...

class GetUdfRequest(_message.Message):
    __slots__ = ("name", "include_pickle")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PICKLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    include_pickle: bool
    def __init__(self, name: _Optional[str] = ..., include_pickle: _Optional[bool] = ...) -> None: ...

class ListUdfsRequest(_message.Message):
    __slots__ = ("namespace", "tag", "text", "page_size", "page_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    tag: str
    text: str
    page_size: int
    page_token: str
    def __init__(self, namespace: _Optional[str] = ..., tag: _Optional[str] = ..., text: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUdfsResponse(_message.Message):
    __slots__ = ("udfs", "next_page_token")
    UDFS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    udfs: _containers.RepeatedCompositeFieldContainer[RegisteredUdf]
    next_page_token: str
    def __init__(self, udfs: _Optional[_Iterable[_Union[RegisteredUdf, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ShareUdfRequest(_message.Message):
    __slots__ = ("name", "grantee")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    name: str
    grantee: str
    def __init__(self, name: _Optional[str] = ..., grantee: _Optional[str] = ...) -> None: ...

class UnshareUdfRequest(_message.Message):
    __slots__ = ("name", "grantee")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    name: str
    grantee: str
    def __init__(self, name: _Optional[str] = ..., grantee: _Optional[str] = ...) -> None: ...

class DeleteUdfRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteUdfResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: int
    def __init__(self, versions: _Optional[int] = ...) -> None: ...
