"""OTLP/HTTP protobuf request bodies (``ExportLogsServiceRequest``) for the store's tests and benchmarks.

One builder: one ResourceLogs (``service.name`` when given), one ScopeLogs (named when given), one LogRecord
per record given. A record is a dict of LogRecord fields (``time_unix_nano``, ``event_name``,
``severity_number``...), ``body`` (a string) and ``attributes`` (str values as ``string_value``, ints as
``int_value``, in the dict's order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["logs_request", "uuid7ish"]


def logs_request(records: Iterable[Mapping[str, Any]], service: str | None = None,
                 scope: str | None = "auditrail") -> ExportLogsServiceRequest:
    """The request holding `records` (see the module docstring)."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    if service is not None:
        resource_logs.resource.attributes.append(_key_value("service.name", service))
    scope_logs = resource_logs.scope_logs.add()
    if scope is not None:
        scope_logs.scope.name = scope
    for fields in records:
        fields = dict(fields)
        attributes = fields.pop("attributes", {})
        body = fields.pop("body", None)
        record = scope_logs.log_records.add(**fields)
        if body is not None:
            record.body.string_value = body
        record.attributes.extend(_key_value(key, value) for key, value in attributes.items())
    return request


def _key_value(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def uuid7ish(n: int) -> str:
    """A fixed UUIDv7-shaped event id, distinct per n."""
    return f"01900000-0000-7000-8000-{n:012x}"


def varint(value: int) -> bytes:
    """A protobuf base-128 varint; negative values as their 64-bit two's complement, as int64 fields are."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): hand-made bodies the SDK's classes cannot build."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
