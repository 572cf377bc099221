from ale.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
PLAINTEXT_FORMAT_JSON: PlaintextFormat
PLAINTEXT_FORMAT_UNSPECIFIED: PlaintextFormat
PLAINTEXT_FORMAT_UTF8: PlaintextFormat

class DecryptBatchRequest(_message.Message):
    __slots__ = ["items"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[DecryptRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[DecryptRequest, _Mapping]]] = ...) -> None: ...

class DecryptBatchResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DecryptResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DecryptResult, _Mapping]]] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ["associated_data", "envelope", "expect"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    envelope: _types_pb2.Envelope
    expect: PlaintextFormat
    def __init__(self, envelope: _Optional[_Union[_types_pb2.Envelope, _Mapping]] = ..., associated_data: _Optional[bytes] = ..., expect: _Optional[_Union[PlaintextFormat, str]] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ["key", "plaintext"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class DecryptResult(_message.Message):
    __slots__ = ["error", "response"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    error: _types_pb2.ItemError
    response: DecryptResponse
    def __init__(self, response: _Optional[_Union[DecryptResponse, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ...) -> None: ...

class EncryptBatchRequest(_message.Message):
    __slots__ = ["items"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[EncryptRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[EncryptRequest, _Mapping]]] = ...) -> None: ...

class EncryptBatchResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EncryptResult]
    def __init__(self, results: _Optional[_Iterable[_Union[EncryptResult, _Mapping]]] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ["associated_data", "key", "plaintext"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    key: _types_pb2.KeyRef
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ["envelope", "key"]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    envelope: _types_pb2.Envelope
    key: _types_pb2.KeyInfo
    def __init__(self, envelope: _Optional[_Union[_types_pb2.Envelope, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class EncryptResult(_message.Message):
    __slots__ = ["error", "response"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    error: _types_pb2.ItemError
    response: EncryptResponse
    def __init__(self, response: _Optional[_Union[EncryptResponse, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyRef
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.KeyInfo
    def __init__(self, key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class RewrapBatchRequest(_message.Message):
    __slots__ = ["items"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RewrapRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[RewrapRequest, _Mapping]]] = ...) -> None: ...

class RewrapBatchResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RewrapResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RewrapResult, _Mapping]]] = ...) -> None: ...

class RewrapRequest(_message.Message):
    __slots__ = ["associated_data", "envelope", "expect", "key"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    envelope: _types_pb2.Envelope
    expect: PlaintextFormat
    key: _types_pb2.KeyRef
    def __init__(self, envelope: _Optional[_Union[_types_pb2.Envelope, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyRef, _Mapping]] = ..., associated_data: _Optional[bytes] = ..., expect: _Optional[_Union[PlaintextFormat, str]] = ...) -> None: ...

class RewrapResponse(_message.Message):
    __slots__ = ["envelope", "key"]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    envelope: _types_pb2.Envelope
    key: _types_pb2.KeyInfo
    def __init__(self, envelope: _Optional[_Union[_types_pb2.Envelope, _Mapping]] = ..., key: _Optional[_Union[_types_pb2.KeyInfo, _Mapping]] = ...) -> None: ...

class RewrapResult(_message.Message):
    __slots__ = ["error", "response"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    error: _types_pb2.ItemError
    response: RewrapResponse
    def __init__(self, response: _Optional[_Union[RewrapResponse, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ["decrypt", "decrypt_batch", "encrypt", "encrypt_batch", "request_id"]
    DECRYPT_BATCH_FIELD_NUMBER: _ClassVar[int]
    DECRYPT_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_BATCH_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    decrypt: DecryptRequest
    decrypt_batch: DecryptBatchRequest
    encrypt: EncryptRequest
    encrypt_batch: EncryptBatchRequest
    request_id: str
    def __init__(self, request_id: _Optional[str] = ..., encrypt: _Optional[_Union[EncryptRequest, _Mapping]] = ..., decrypt: _Optional[_Union[DecryptRequest, _Mapping]] = ..., encrypt_batch: _Optional[_Union[EncryptBatchRequest, _Mapping]] = ..., decrypt_batch: _Optional[_Union[DecryptBatchRequest, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ["decrypt", "decrypt_batch", "encrypt", "encrypt_batch", "error", "request_id"]
    DECRYPT_BATCH_FIELD_NUMBER: _ClassVar[int]
    DECRYPT_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_BATCH_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    decrypt: DecryptResponse
    decrypt_batch: DecryptBatchResponse
    encrypt: EncryptResponse
    encrypt_batch: EncryptBatchResponse
    error: _types_pb2.ItemError
    request_id: str
    def __init__(self, request_id: _Optional[str] = ..., encrypt: _Optional[_Union[EncryptResponse, _Mapping]] = ..., decrypt: _Optional[_Union[DecryptResponse, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ..., encrypt_batch: _Optional[_Union[EncryptBatchResponse, _Mapping]] = ..., decrypt_batch: _Optional[_Union[DecryptBatchResponse, _Mapping]] = ...) -> None: ...

class PlaintextFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
