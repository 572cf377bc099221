from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ALGORITHM_AES_256_CTR: Algorithm
ALGORITHM_AES_256_GCM: Algorithm
ALGORITHM_UNSPECIFIED: Algorithm
DESCRIPTOR: _descriptor.FileDescriptor
KEY_STATE_ACTIVE: KeyState
KEY_STATE_DECRYPT_ONLY: KeyState
KEY_STATE_DISABLED: KeyState
KEY_STATE_UNSPECIFIED: KeyState

class Envelope(_message.Message):
    __slots__ = ["fingerprint", "iv", "message"]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    IV_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    iv: bytes
    message: bytes
    def __init__(self, iv: _Optional[bytes] = ..., fingerprint: _Optional[str] = ..., message: _Optional[bytes] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ["error_code", "message"]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error_code: int
    message: str
    def __init__(self, error_code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ["code", "detail", "message"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    detail: ErrorDetail
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., detail: _Optional[_Union[ErrorDetail, _Mapping]] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ["algorithm", "aliases", "counter_bits", "created_at", "fingerprint", "not_after", "primary", "source", "state", "usage", "version"]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    COUNTER_BITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    algorithm: Algorithm
    aliases: _containers.RepeatedScalarFieldContainer[str]
    counter_bits: int
    created_at: _timestamp_pb2.Timestamp
    fingerprint: str
    not_after: _timestamp_pb2.Timestamp
    primary: bool
    source: str
    state: KeyState
    usage: KeyUsage
    version: int
    def __init__(self, fingerprint: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., algorithm: _Optional[_Union[Algorithm, str]] = ..., state: _Optional[_Union[KeyState, str]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., primary: bool = ..., counter_bits: _Optional[int] = ..., usage: _Optional[_Union[KeyUsage, _Mapping]] = ...) -> None: ...

class KeyRef(_message.Message):
    __slots__ = ["alias", "fingerprint"]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    alias: str
    fingerprint: str
    def __init__(self, fingerprint: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class KeyUsage(_message.Message):
    __slots__ = ["decrypt_count", "encrypt_count", "last_decrypt_time", "last_encrypt_time"]
    DECRYPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_DECRYPT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ENCRYPT_TIME_FIELD_NUMBER: _ClassVar[int]
    decrypt_count: int
    encrypt_count: int
    last_decrypt_time: _timestamp_pb2.Timestamp
    last_encrypt_time: _timestamp_pb2.Timestamp
    def __init__(self, encrypt_count: _Optional[int] = ..., decrypt_count: _Optional[int] = ..., last_encrypt_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_decrypt_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
