"""OTLP/JSON lines: the format of the OpenTelemetry Collector's ``file`` exporter, for writing and reading.

Each line is one ``ExportLogsServiceRequest`` encoded the way the collector's pdata JSON marshaler
(``plog.JSONMarshaler``) writes it, so a file written here can be replayed by the collector's
``otlpjsonfile`` receiver and a file written by the collector can be read by :func:`read_records`.

What pdata does, and plain ``json_format.MessageToJson`` does not (read from
``pdata/internal/generated_proto_*.go`` and ``pdata/internal/json/stream.go``, then confirmed by feeding
thousands of random requests through pdata v1.71.0's JSONUnmarshaler + JSONMarshaler: byte-identical):

* ``traceId`` / ``spanId`` are lowercase hex, not base64 (``bytesValue`` stays base64), and are left out
  when all-zero;
* singular non-oneof message fields are always written, even when empty (``"resource":{}``,
  ``"scope":{}``, ``"body":{}``, ``"value":{}``);
* fields come in ``.proto`` declaration order (``observedTimeUnixNano`` right after ``timeUnixNano``),
  not field-number order;
* doubles use Go's formatting (``1`` not ``1.0``, ``0.00005`` not ``5e-05``, exponent form only below 1e-6
  and from 1e21; jsoniter keeps two-digit exponents such as ``1e-07``, unlike Go's encoding/json);
* strings escape backspace and form feed as ``\\u0008`` / ``\\u000c``, everything else non-ASCII raw.

int64/fixed64 as decimal strings, enums as integers and lowerCamelCase names are the protobuf JSON
mapping (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) and come from ``json_format``.

Two encoders write these lines. :func:`logs_to_collector_json`, which the exporter uses, writes SDK records
straight to the JSON bytes (~20 us per auditrail record where the protobuf route below takes ~400 us;
``benchmarks/file_exporter.py``). :func:`request_to_collector_json` encodes an ``ExportLogsServiceRequest``
through ``json_format.MessageToDict``; fed ``encode_logs(batch)`` it is the reference the direct encoder is
tested against, byte for byte, on randomized batches.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import json
import logging
import math
import operator
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

__all__ = [
    "OTLPJsonLinesExporter",
    "ReadErrorHandler",
    "decode_any_value",
    "decode_attributes",
    "logs_to_collector_json",
    "read_records",
    "request_to_collector_json",
]

_logger = logging.getLogger(__name__)

# Fields that hold W3C ids: pdata writes them as hex, where the protobuf JSON mapping says base64.
_HEX_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})

# A line begins with this; a torn fragment followed by a whole request is split at the next occurrence.
# The sequence cannot occur inside a JSON string (its quotes would be escaped), nor as a nested key
# (attribute keys are values of "key", never object keys).
_REQUEST_START = b'{"resourceLogs":'

ReadErrorHandler = Callable[[str, int, str], None]
"""``on_error(path, lineno, message)`` for a line :func:`read_records` had to skip."""


# --------------------------------------------------------------------------------------------------
# Encoding


def request_to_collector_json(request: ExportLogsServiceRequest) -> str:
    """Encode an ``ExportLogsServiceRequest`` as one line of collector-style OTLP/JSON (no newline)."""
    as_dict = json_format.MessageToDict(
        request,
        preserving_proto_field_name=False,
        use_integers_for_enums=True,
    )
    exotic = [False]
    shaped = _reshape(as_dict, request.DESCRIPTOR, exotic)
    if exotic[0]:
        return _dump(shaped)
    # Fast path (C encoder): without \b, \f or doubles Python spells differently, the output is identical.
    return json.dumps(shaped, ensure_ascii=False, separators=(",", ":"), check_circular=False)


# How _reshape treats a field.
_MESSAGE, _HEX_ID, _DOUBLE, _STRING, _PLAIN = range(5)

_FieldPlan = tuple[str, int, bool, "Descriptor | None", bool]  # json name, kind, repeated, message type, always


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[_FieldPlan, ...]:
    """Per-message field plan, computed once: upb descriptor attribute access is slow on the hot path."""
    plan: list[_FieldPlan] = []
    # descriptor.fields is in .proto declaration order, which is the order pdata's generated code writes.
    for field in descriptor.fields:
        repeated = _is_repeated(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            kind = _MESSAGE
        elif field.type == FieldDescriptor.TYPE_BYTES and field.json_name in _HEX_ID_FIELDS:
            kind = _HEX_ID
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            kind = _DOUBLE
        elif field.type == FieldDescriptor.TYPE_STRING:
            kind = _STRING
        else:
            kind = _PLAIN
        # pdata holds singular non-oneof messages by value, so it always writes them, empty or not.
        always = kind == _MESSAGE and not repeated and field.containing_oneof is None
        plan.append((field.json_name, kind, repeated, field.message_type if kind == _MESSAGE else None, always))
    return tuple(plan)


def _reshape(obj: dict[str, Any], descriptor: Descriptor, exotic: list[bool]) -> dict[str, Any]:
    """Reorder, fill and re-encode a ``MessageToDict`` result like pdata; flag values json.dumps would misspell."""
    out: dict[str, Any] = {}
    for name, kind, repeated, message_type, always in _plan(descriptor):
        value = obj.get(name)
        if value is None:
            if always:
                out[name] = {}
            continue
        if kind == _MESSAGE:
            assert message_type is not None
            if repeated:
                out[name] = [_reshape(item, message_type, exotic) for item in value]
            else:
                out[name] = _reshape(value, message_type, exotic)
        elif kind == _HEX_ID:
            raw = base64.b64decode(value)
            if any(raw):  # pdata treats an all-zero id as absent
                out[name] = raw.hex()
        elif kind == _DOUBLE:
            out[name] = [_double(item, exotic) for item in value] if repeated else _double(value, exotic)
        else:
            if kind == _STRING and not exotic[0]:
                for item in value if repeated else (value,):
                    if "\b" in item or "\f" in item:  # Go writes \u0008 / \u000c
                        exotic[0] = True
            out[name] = value
    return out


def _double(value: Any, exotic: list[bool]) -> Any:
    """A double ready for json.dumps where Python and Go agree; flags the rest for :func:`_go_float`."""
    if not isinstance(value, float):
        return value  # json_format's "NaN" / "Infinity" / "-Infinity" strings
    magnitude = abs(value)
    # Integral values below 1e15 are exact ints; Go prints 1.0 as "1", so hand json.dumps an int.
    if value.is_integer() and magnitude < 1e15 and (value or math.copysign(1.0, value) > 0):
        return int(value)
    # Python's repr switches to exponent form below 1e-4 and from 1e16, Go below 1e-6 and from 1e21.
    if not 1e-4 <= magnitude < 1e15:
        exotic[0] = True
    return value


def _is_repeated(field: FieldDescriptor) -> bool:
    """Whether a field is repeated; protobuf 6 deprecates ``label`` for ``is_repeated``, 5.x lacks the latter."""
    flag = getattr(field, "is_repeated", None)
    if flag is None:
        return field.label == FieldDescriptor.LABEL_REPEATED
    return bool(flag() if callable(flag) else flag)


def _dump(value: Any) -> str:
    """Serialize like jsoniter's ConfigFastest stream as pdata uses it: compact, Go number/string spelling."""
    if isinstance(value, dict):
        return "{" + ",".join(_go_string(k) + ":" + _dump(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, str):
        return _go_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if value is None:
        return "null"
    raise TypeError(f"cannot encode {type(value).__name__} as OTLP/JSON")


_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _go_string(text: str) -> str:
    """JSON string as jsoniter writes it without HTML escaping."""
    encoded = _encode_basestring(text)  # C-accelerated; differs from Go only for \b and \f
    if "\b" not in text and "\f" not in text:
        return encoded
    parts = ("\\u0008" if c == "\b" else "\\u000c" if c == "\f" else _encode_basestring(c)[1:-1] for c in text)
    return '"' + "".join(parts) + '"'


def _go_float(number: float) -> str:
    """A double as Go's encoders write it: shortest round-trip digits, exponent only below 1e-6 or from 1e21."""
    if math.isnan(number) or math.isinf(number):
        # json_format already turns these into the strings "NaN"/"Infinity"; keep the same if one slips by.
        return '"NaN"' if math.isnan(number) else ('"Infinity"' if number > 0 else '"-Infinity"')
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    text = repr(number)  # shortest round-trip digits, same digits as Go's strconv 'f'/'e' with precision -1
    magnitude = abs(number)
    if 1e-6 <= magnitude < 1e21:
        if "e" in text:
            text = format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    # Exponent form: Python's repr and Go's strconv agree ("1e-07", "1e+21"). jsoniter, unlike
    # encoding/json, does not trim "e-07" to "e-7".
    return text


# --------------------------------------------------------------------------------------------------
# Direct encoding of SDK records (the exporter's path)
#
# The bytes request_to_collector_json(encode_logs(batch)) gives, written straight from the SDK records
# with no protobuf message and no dict tree in between: each record becomes one bytes object assembled
# from constant pieces (field names in pdata's order, cached per attribute key) and orjson.dumps of each
# string (orjson escapes exactly like the stdlib, hence like Go, except \b and \f, fixed on the finished
# line); the resource and scope messages are encoded once and cached. Few and short-lived allocations
# matter as much as fewer bytecodes here: fresh memory is what a dict-per-value tree costs most.
#
# Every rule of the protobuf route is mirrored, including where it fails:
# * the SDK encoder's value mapping (_encode_value: None, bool, str, int, float, bytes, Sequence,
#   Mapping, in that order; anything else raises), its grouping (a dict keyed by Resource, then by
#   InstrumentationScope, so equal-but-distinct objects merge under the first one seen), and its
#   per-attribute error handling (an attribute that cannot be encoded is logged and left out, any
#   other error fails the batch);
# * what protobuf refuses: int64/int32/uint32/fixed64 ranges, non-integers in integer fields, strings
#   that are not UTF-8 (lone surrogates; orjson refuses the same ones), and upb's copy depth limit: a
#   message more than 101 levels deep cannot be copied into its parent, which drops an attribute (value
#   nested 102+ levels) or fails the batch (a ResourceLogs deeper than 101 levels).

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1
_UINT32_END = 1 << 32
_UINT64_END = 1 << 64
_TRACE_ID_END = 1 << 128

# upb copies a message passed to a constructor through its wire format; parsing allows 100 levels below
# the copied message, so copying one deeper than this fails.
_MAX_COPY_DEPTH = 101
# Deepest AnyValue (scalar = 1, array of scalars = 3, kvlist of scalars = 4) the protobuf route takes in
# each place. ResourceLogs (<= 101) = 1 + max(Resource, ScopeLogs); ScopeLogs = 1 + max(scope, LogRecord);
# LogRecord = 1 + max(body, KeyValue); scope and Resource = 1 + KeyValue; KeyValue = 1 + its value.
_MAX_BODY_DEPTH = _MAX_COPY_DEPTH - 3
_MAX_RECORD_ATTRIBUTE_DEPTH = _MAX_COPY_DEPTH - 4
_MAX_SCOPE_ATTRIBUTE_DEPTH = _MAX_COPY_DEPTH - 4
_MAX_RESOURCE_ATTRIBUTE_DEPTH = _MAX_COPY_DEPTH - 3

_dumps = orjson.dumps  # a str -> its JSON string (raises orjson.JSONEncodeError, a TypeError, on surrogates)

# \b or \f as orjson writes them, or an escaped backslash (consumed so that "\\b" is not misread).
_SHORT_ESCAPE = re.compile(rb"\\[\\bf]")
_GO_ESCAPES = {b"\\\\": b"\\\\", b"\\b": b"\\u0008", b"\\f": b"\\u000c"}

_UNSET = object()
_CACHE_LIMIT = 256  # resources, scopes, severities: a process has a handful
_KEY_CACHE_LIMIT = 4096  # attribute keys
# attribute key -> (b',{"key":…,"value":', b',{"key":…,"value":{"stringValue":')
_key_prefixes: dict[str, tuple[bytes, bytes]] = {}
# id(object) -> (object, encoded message, encoded schemaUrl member or b"", deepest attribute value). The
# object is held so its id is not reused while the entry exists; SDK Resources and scopes are immutable.
_resource_cache: dict[int, tuple[Any, bytes, bytes, int]] = {}
_scope_cache: dict[int, tuple[Any, bytes, bytes, int]] = {}
# id(severity enum member) -> (member, its encoded severityNumber member or b"")
_severity_members: dict[int, tuple[Any, bytes]] = {}


def logs_to_collector_json(batch: Sequence[ReadableLogRecord]) -> bytes:
    """Encode SDK log records as one line of collector-style OTLP/JSON (UTF-8, no newline).

    Byte for byte ``request_to_collector_json(encode_logs(batch)).encode()`` at a fraction of the cost;
    raises where that raises.
    """
    return _encode_batch(batch, b"")


def _encode_batch(batch: Sequence[ReadableLogRecord], end: bytes) -> bytes:
    """The line for ``batch`` followed by ``end``, grouped by resource then scope like the SDK's encode_logs."""
    # [resource, {scope: [scope, [encoded record, ...]]}] in first-seen order. The SDK groups in a dict
    # keyed by Resource (whose hash is a json.dumps of its attributes); the records of a batch nearly always
    # share one Resource object, so that dict (and the hashing) only starts at a second distinct object.
    groups: list[list[Any]] = []
    by_id: dict[int, list[Any]] = {}
    by_resource: dict[Any, list[Any]] | None = None
    last_resource: Any = _UNSET
    last_scope: Any = _UNSET
    records: list[bytes] = []
    for record in batch:
        resource = record.resource
        scope = record.instrumentation_scope or None
        encoded = _encode_record(record)
        if resource is not last_resource or scope is not last_scope:
            group = by_id.get(id(resource))
            if group is None:
                if groups:
                    if by_resource is None:
                        by_resource = {groups[0][0]: groups[0]}
                    group = by_resource.get(resource)
                    if group is None:
                        group = by_resource[resource] = [resource, {}]
                        groups.append(group)
                else:
                    group = [resource, {}]
                    groups.append(group)
                by_id[id(resource)] = group
            scopes: dict[Any, list[Any]] = group[1]
            entry = scopes.get(scope)
            if entry is None:
                entry = scopes[scope] = [scope, []]
            records = entry[1]
            last_resource, last_scope = resource, scope
        records.append(encoded)
    if not groups:
        return b"{}" + end

    parts = [b'{"resourceLogs":[']
    append = parts.append
    for group_index, (resource, scopes) in enumerate(groups):
        resource_message, resource_schema, deepest = _resource_entry(resource)
        if deepest > _MAX_RESOURCE_ATTRIBUTE_DEPTH:
            raise ValueError("resource attribute nested too deeply for protobuf")
        append(b',{"resource":' if group_index else b'{"resource":')
        append(resource_message)
        append(b',"scopeLogs":[')
        for scope_index, (scope, scope_records) in enumerate(scopes.values()):
            scope_message, scope_schema, deepest = _scope_entry(scope)
            if deepest > _MAX_SCOPE_ATTRIBUTE_DEPTH:
                raise ValueError("scope attribute nested too deeply for protobuf")
            append(b',{"scope":' if scope_index else b'{"scope":')
            append(scope_message)
            append(b',"logRecords":[')
            append(scope_records[0])
            for encoded in scope_records[1:]:
                append(b",")
                append(encoded)
            append(b"]")
            append(scope_schema)
            append(b"}")
        append(b"]")
        append(resource_schema)
        append(b"}")
    append(b"]}")
    append(end)
    line = b"".join(parts)
    if b"\\b" in line or b"\\f" in line:
        line = _SHORT_ESCAPE.sub(_go_escape, line)
    return line


def _go_escape(match: re.Match[bytes]) -> bytes:
    return _GO_ESCAPES[match.group()]


def _append_string_member(parts: list[bytes], member: bytes, value: Any) -> None:
    """A string member as pdata writes it (checked like protobuf; the empty default is left out)."""
    if type(value) is not str:
        value = _string_field(value)
    if value:
        parts.append(member)
        parts.append(_dumps(value))


def _uint64_member(template: bytes, label: str, value: Any) -> bytes:
    """A fixed64 member as pdata writes it (a decimal string; 0, the default, is left out)."""
    if type(value) is not int:
        value = operator.index(value)  # as protobuf: 1.0 or "" raise
    if value < 0 or value >= _UINT64_END:
        raise ValueError(f"{label} out of range: {value}")
    return template % value if value else b""


def _cached(cache: dict[int, tuple[Any, ...]], obj: Any, build: Any) -> tuple[bytes, bytes, int]:
    """`build(obj)`, cached by identity (the entry keeps `obj` alive, so its id cannot be reused)."""
    entry = cache.get(id(obj))
    if entry is None or entry[0] is not obj:
        entry = (obj, *build(obj))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[id(obj)] = entry
    return entry[1], entry[2], entry[3]


def _resource_entry(resource: Any) -> tuple[bytes, bytes, int]:
    """The encoded Resource message, its schemaUrl member and its deepest attribute value."""
    return _cached(_resource_cache, resource, _build_resource)


def _build_resource(resource: Any) -> tuple[bytes, bytes, int]:
    parts: list[bytes] = [b"{"]
    deepest = _append_attributes(parts, resource.attributes)
    if len(parts) > 1:
        parts[1] = parts[1][1:]
    parts.append(b"}")
    return b"".join(parts), _schema_url_member(resource.schema_url), deepest


def _scope_entry(scope: Any) -> tuple[bytes, bytes, int]:
    """The encoded InstrumentationScope message, its schemaUrl member and its deepest attribute."""
    if scope is None:  # the SDK encodes a missing scope as an empty message
        return b"{}", b"", 0
    return _cached(_scope_cache, scope, _build_scope)


def _build_scope(scope: Any) -> tuple[bytes, bytes, int]:
    parts: list[bytes] = [b"{"]
    name = _string_field(scope.name)
    if name:
        parts.append(b',"name":' + _dumps(name))
    version = _string_field(scope.version)
    if version:
        parts.append(b',"version":' + _dumps(version))
    deepest = _append_attributes(parts, scope.attributes)
    if len(parts) > 1:
        parts[1] = parts[1][1:]
    parts.append(b"}")
    return b"".join(parts), _schema_url_member(scope.schema_url), deepest


def _schema_url_member(schema_url: Any) -> bytes:
    """``,"schemaUrl":"…"``, or nothing for an empty URL."""
    text = _string_field(schema_url)
    return b',"schemaUrl":' + _dumps(text) if text else b""


def _encode_record(record: ReadableLogRecord) -> bytes:
    """One LogRecord message (the SDK's _encode_log), fields in pdata's order, defaults left out."""
    log = record.log_record
    parts = [b"{"]
    append = parts.append
    # Integer fields: None is unset, anything else goes through __index__ (so 1.0 or "" raise, as in
    # protobuf), and 0 is the default pdata leaves out.
    for template, label, value in ((b',"timeUnixNano":"%d"', "timestamp", log.timestamp),
                                   (b',"observedTimeUnixNano":"%d"', "observed_timestamp", log.observed_timestamp)):
        if value is not None and (member := _uint64_member(template, label, value)):
            append(member)  # (never an empty part: the first part's comma is stripped later)
    value: Any = log.severity_number
    if value is not None:
        entry = _severity_members.get(id(value))
        if entry is None or entry[0] is not value:
            entry = _severity_member(value)
        if entry[1]:
            append(entry[1])
    if log.severity_text is not None:
        _append_string_member(parts, b',"severityText":', log.severity_text)
    value = log.body
    if type(value) is str:
        append(b',"body":{"stringValue":')
        append(_dumps(value))
        append(b"}")
    else:
        body, depth = _any_value(value)
        if depth > _MAX_BODY_DEPTH:
            raise ValueError("log record body nested too deeply for protobuf")
        append(b',"body":')
        append(body)
    attributes = log.attributes
    if attributes and _append_attributes(parts, attributes) > _MAX_RECORD_ATTRIBUTE_DEPTH:
        raise ValueError("log record attribute nested too deeply for protobuf")
    if type(record) is ReadableLogRecord:  # its dropped_attributes property, inlined
        value = attributes.dropped if isinstance(attributes, BoundedAttributes) else 0
    else:
        value = record.dropped_attributes
    if value:
        if type(value) is not int:
            value = operator.index(value)
        if value < 0 or value >= _UINT32_END:
            raise ValueError(f"dropped_attributes out of range: {value}")
        append(b',"droppedAttributesCount":%d' % value)
    value = int(log.trace_flags)
    if value:
        if value < 0 or value >= _UINT32_END:
            raise ValueError(f"trace_flags out of range: {value}")
        append(b',"flags":%d' % value)
    value = log.trace_id
    if value != 0:
        if type(value) is int and 0 < value < _TRACE_ID_END:
            append(b',"traceId":"%032x"' % value)
        else:  # whatever the SDK's int.to_bytes makes of it, errors included
            append(b',"traceId":"%s"' % value.to_bytes(length=16, byteorder="big", signed=False).hex().encode())
    value = log.span_id
    if value != 0:
        if type(value) is int and 0 < value < _UINT64_END:
            append(b',"spanId":"%016x"' % value)
        else:
            append(b',"spanId":"%s"' % value.to_bytes(length=8, byteorder="big", signed=False).hex().encode())
    if log.event_name is not None:
        _append_string_member(parts, b',"eventName":', log.event_name)
    parts[1] = parts[1][1:]  # no comma before the first member (body is always there)
    append(b"}")
    return b"".join(parts)


def _severity_member(severity: Any) -> tuple[Any, bytes]:
    """(severity, its ``,"severityNumber":N`` member or b""), cached for enum members (immutable singletons)."""
    value = getattr(severity, "value", None)  # the SDK's reading: a plain int has no .value and is dropped
    member = b""
    if value is not None:
        if isinstance(value, str):  # protobuf takes an enum label too
            value = SeverityNumber.Value(value)
        elif type(value) is not int:
            value = operator.index(value)
        if value < _INT32_MIN or value > _INT32_MAX:
            raise ValueError(f"severity_number out of range: {value}")
        if value:
            member = b',"severityNumber":%d' % value
    entry = (severity, member)
    if isinstance(severity, enum.Enum) and len(_severity_members) < _CACHE_LIMIT:
        _severity_members[id(severity)] = entry
    return entry


def _append_attributes(parts: list[bytes], attributes: Any) -> int:
    """Append ``,"attributes":[…]`` (nothing if none is left) like the SDK's _encode_attributes.

    An attribute that cannot be encoded is logged and left out, as the SDK does. Returns the depth of the
    deepest value written (0 if none).
    """
    if not attributes:
        return 0
    items = attributes._dict.items() if type(attributes) is BoundedAttributes else attributes.items()
    append = parts.append
    start = len(parts)
    append(b',"attributes":[')
    deepest = 0
    for key, value in items:
        try:
            # The SDK encodes the value before the key; either failing drops the attribute, so order is moot.
            prefixes = _key_prefixes.get(key) or _key_prefix(key)
            kind = type(value)
            if kind is str:
                encoded = _dumps(value)
                append(prefixes[1])
                append(encoded)
                append(b"}}")
                continue
            if kind is int:
                if value < _INT64_MIN or value > _INT64_MAX:
                    raise ValueError(f"Value out of range: {value}")
                encoded = b'{"intValue":"%d"}' % value
            elif kind is bool:
                encoded = b'{"boolValue":true}' if value else b'{"boolValue":false}'
            elif kind is float:
                encoded = b'{"doubleValue":%b}' % _double_bytes(value)
            else:
                encoded, depth = _any_value(value)
                if depth > _MAX_COPY_DEPTH:  # the KeyValue cannot take a copy of it
                    raise ValueError("attribute value nested too deeply for protobuf")
                if depth > deepest:
                    deepest = depth
            append(prefixes[0])
            append(encoded)
            append(b"}")
        except Exception as error:  # noqa: BLE001 - as the SDK encoder does: leave the attribute out, log why
            _logger.exception("Failed to encode key %s: %s", key, error)
    if len(parts) == start + 1:
        parts.pop()  # none was left
        return 0
    parts[start + 1] = parts[start + 1][1:]  # no comma before the first KeyValue
    append(b"]")
    return deepest or 1


def _key_prefix(key: Any) -> tuple[bytes, bytes]:
    """The cached opening of a KeyValue for ``key`` (after a comma): before a value, before a string's text."""
    name = _string_field(key)
    prefixes = _key_prefixes.get(name)
    if prefixes is None:
        generic = b',{"key":' + _dumps(name) + b',"value":' if name else b',{"value":'
        prefixes = (generic, generic + b'{"stringValue":')
        if len(_key_prefixes) >= _KEY_CACHE_LIMIT:
            _key_prefixes.clear()
        _key_prefixes[name] = prefixes
    return prefixes


def _any_value(value: Any) -> tuple[bytes, int]:
    """An AnyValue (the SDK's _encode_value) and its protobuf message depth (AnyValue alone = 1)."""
    if value is None:
        return b"{}", 1
    if isinstance(value, bool):
        return (b'{"boolValue":true}' if value else b'{"boolValue":false}'), 1
    if isinstance(value, str):
        return b'{"stringValue":%b}' % _dumps(str.__str__(value)), 1
    if isinstance(value, int):
        number = int.__index__(value)
        if number < _INT64_MIN or number > _INT64_MAX:
            raise ValueError(f"Value out of range: {number}")
        return b'{"intValue":"%d"}' % number, 1
    if isinstance(value, float):
        return b'{"doubleValue":%b}' % _double_bytes(float.__float__(value)), 1
    if isinstance(value, bytes):
        return b'{"bytesValue":"%b"}' % base64.b64encode(value), 1
    if isinstance(value, Sequence):
        items = []
        deepest = 0
        for item in value:
            encoded, depth = _any_value(item)
            items.append(encoded)
            if depth > deepest:
                deepest = depth
        # ArrayValue = 1 + its deepest value; the AnyValue holding it one more.
        if deepest + 1 > _MAX_COPY_DEPTH:
            raise ValueError("array nested too deeply for protobuf")
        if not items:
            return b'{"arrayValue":{}}', 2
        return b'{"arrayValue":{"values":[%b]}}' % b",".join(items), deepest + 2
    if isinstance(value, Mapping):
        items = []
        deepest = 0
        for key, item in value.items():
            encoded, depth = _any_value(item)
            name = str(key)
            items.append(b'{"key":%b,"value":%b}' % (_dumps(name), encoded) if name else b'{"value":%b}' % encoded)
            if depth > deepest:
                deepest = depth
        # KeyValueList = 1 + KeyValue = 2 + its deepest value; the AnyValue holding it one more.
        if items:
            deepest += 1
        if deepest + 1 > _MAX_COPY_DEPTH:
            raise ValueError("kvlist nested too deeply for protobuf")
        if not items:
            return b'{"kvlistValue":{}}', 2
        return b'{"kvlistValue":{"values":[%b]}}' % b",".join(items), deepest + 2
    raise Exception(f"Invalid type {type(value)} of value {value}")  # what the SDK encoder raises


def _double_bytes(number: float) -> bytes:
    """A double as pdata writes it (see _go_float); NaN and the infinities as json_format's strings."""
    if 1e-4 <= number < 1e15 or -1e15 < number <= -1e-4:
        # repr's shortest digits are Go's here; Go writes integral values without ".0".
        return b"%d" % number if number.is_integer() else repr(number).encode()
    if number != number:
        return b'"NaN"'
    if number == math.inf:
        return b'"Infinity"'
    if number == -math.inf:
        return b'"-Infinity"'
    return _go_float(number).encode()


def _string_field(value: Any) -> str:
    """What protobuf stores in a string field: None unset, str as is, UTF-8 bytes decoded, else TypeError."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: bytes, str")


# --------------------------------------------------------------------------------------------------
# Exporter


class OTLPJsonLinesExporter(LogRecordExporter):
    """Append each exported batch to a file as one collector-style OTLP/JSON ``ExportLogsServiceRequest`` line."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        """Write to ``path`` (created with its parent directories on first export); ``fsync`` after each line if set."""
        self._path = Path(path)
        self._fsync = fsync
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._shutdown = False
        if hasattr(os, "register_at_fork"):
            # A lock held by another thread at fork() time would stay locked forever in the child.
            weak_self = weakref.ref(self)

            def _reinit_lock() -> None:
                exporter = weak_self()
                if exporter is not None:
                    exporter._lock = threading.Lock()

            os.register_at_fork(after_in_child=_reinit_lock)

    @property
    def path(self) -> Path:
        """The file this exporter appends to."""
        return self._path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Write ``batch`` as one line; FAILURE (logged, never raised) when it cannot be encoded or written."""
        ok = self._write(batch, lambda: _encode_batch(batch, b"\n"))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def export_events(self, events: Sequence[Any], resource: Any, scope: Any) -> bool:
        """Write audit events as one line, encoded straight from them (no SDK LogRecord objects in between)."""
        from ..pipeline import event_view  # (pipeline imports this package)

        return self._write(events, lambda: _encode_batch([event_view(e, resource, scope) for e in events], b"\n"))

    def _write(self, batch: Sequence[Any], encode: Callable[[], bytes]) -> bool:
        if self._shutdown:
            _logger.warning("OTLPJsonLinesExporter for %s is shut down; dropping %d records", self._path, len(batch))
            return False
        if not batch:
            return True
        try:
            line = encode()
        except Exception:  # noqa: BLE001 - an exporter must not raise into the SDK or the app
            _logger.exception("cannot encode %d log records as OTLP/JSON", len(batch))
            return False
        with self._lock:
            try:
                stream = self._open()
                # One write of the whole line: with O_APPEND the kernel places it at the end in one piece,
                # so concurrent writers (threads or processes) never interleave inside a line.
                stream.write(line)
                stream.flush()
                if self._fsync:
                    os.fsync(stream.fileno())
            except OSError:
                _logger.exception("cannot write %d log records to %s", len(batch), self._path)
                # A failed write may have left half a line; reopening terminates it before the next one.
                self._close_quietly()
                return False
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush buffered bytes to the OS (each export already flushes); False if that fails."""
        with self._lock:
            if self._file is None:
                return True
            try:
                self._file.flush()
                if self._fsync:
                    os.fsync(self._file.fileno())
            except OSError:
                _logger.exception("cannot flush %s", self._path)
                return False
        return True

    def shutdown(self) -> None:
        """Close the file; later exports return FAILURE."""
        with self._lock:
            self._shutdown = True
            self._close_quietly()

    def _open(self) -> IO[bytes]:
        """Open the file for appending, first terminating a torn last line left by a crash."""
        if self._file is not None:
            return self._file
        self._path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(self._path, "ab")  # noqa: SIM115 - kept open across exports, closed in shutdown()
        try:
            if stream.tell() > 0 and not _ends_with_newline(self._path):
                # Without this the first line of this run would be glued onto the fragment and both lost.
                stream.write(b"\n")
                stream.flush()
        except OSError:
            stream.close()
            raise
        self._file = stream
        return stream

    def _close_quietly(self) -> None:
        """Close the file if open, logging (not raising) errors."""
        stream, self._file = self._file, None
        if stream is None:
            return
        try:
            stream.close()
        except OSError:
            _logger.exception("cannot close %s", self._path)


def _ends_with_newline(path: Path) -> bool:
    """True when the (non-empty) file's last byte is a newline."""
    with open(path, "rb") as reader:
        reader.seek(-1, os.SEEK_END)
        return reader.read(1) == b"\n"


# --------------------------------------------------------------------------------------------------
# Reader


def read_records(
    paths: Iterable[str | os.PathLike[str]],
    on_error: ReadErrorHandler | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one flat dict per log record in OTLP/JSON-lines files, skipping and reporting bad lines.

    Keys: event_name, time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body,
    attributes, resource, scope_name, scope_version, trace_id, span_id. A line that is not a valid
    request (a torn tail after a crash, garbage) is passed to ``on_error(path, lineno, message)``,
    by default logged as a warning, and reading goes on. A missing or unreadable file raises OSError.
    Accepts pdata's output and plain protobuf JSON (base64 ids, snake_case names, numeric int64s).
    """
    report = on_error or _log_read_error
    for path in paths:
        name = os.fspath(path)
        with open(path, "rb") as stream:
            previous: bytes | None = None
            lineno = 0
            # Look one line ahead so the last line can be told apart ("torn tail" vs "malformed line").
            for raw in stream:
                if previous is not None:
                    yield from _read_line(name, lineno, previous, report, last=False)
                previous = raw
                lineno += 1
            if previous is not None:
                yield from _read_line(name, lineno, previous, report, last=True)


def _log_read_error(path: str, lineno: int, message: str) -> None:
    """Default ``on_error``: a warning in the log."""
    _logger.warning("%s:%d: skipped: %s", path, lineno, message)


def _read_line(
    path: str, lineno: int, raw: bytes, report: ReadErrorHandler, *, last: bool
) -> Iterator[dict[str, Any]]:
    """Decode one line into flat records, reporting what had to be skipped."""
    if not raw.strip():
        return
    request, problem = _parse_request(raw)
    if request is None:
        torn = last and not raw.endswith(b"\n")
        report(path, lineno, ("torn last line (no trailing newline): " if torn else "malformed line: ") + problem)
        return
    if problem:
        report(path, lineno, problem)
    for index, (resource, scope, record) in enumerate(_walk(request)):
        try:
            flat = _flatten(resource, scope, record)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
            report(path, lineno, f"log record #{index + 1} skipped: {type(error).__name__}: {error}")
            continue
        yield flat


def _parse_request(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """Parse a line; also recover a whole request glued after a torn fragment. Returns (request, problem)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError as error:
        problem = f"invalid JSON ({error})"
    else:
        if isinstance(parsed, dict):
            return parsed, ""
        return None, f"expected a JSON object, got {type(parsed).__name__}"
    # A writer that did not repair the torn tail before appending glues its next line onto the fragment.
    start = raw.find(_REQUEST_START, 1)
    while start != -1:
        try:
            parsed = json.loads(raw[start:].decode("utf-8", errors="replace"))
        except ValueError:
            start = raw.find(_REQUEST_START, start + 1)
            continue
        if isinstance(parsed, dict):
            return parsed, f"skipped a {start}-byte torn fragment before a complete request"
        break
    return None, problem


def _field(obj: Mapping[str, Any], camel: str, snake: str | None = None) -> Any:
    """A field by its JSON name or, as pdata also accepts, its proto name."""
    value = obj.get(camel)
    if value is None and snake is not None:
        value = obj.get(snake)
    return value


def _walk(request: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]]:
    """(resourceLogs entry, scopeLogs entry, logRecord) triples of a request."""
    for resource_logs in _field(request, "resourceLogs", "resource_logs") or ():
        for scope_logs in _field(resource_logs, "scopeLogs", "scope_logs") or ():
            for record in _field(scope_logs, "logRecords", "log_records") or ():
                yield resource_logs, scope_logs, record


def _flatten(resource_logs: Mapping[str, Any], scope_logs: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """One flat dict for a log record together with its resource and scope."""
    resource = resource_logs.get("resource") or {}
    scope = scope_logs.get("scope") or {}
    body = record.get("body")
    return {
        "event_name": _field(record, "eventName", "event_name") or None,
        "time_unix_nano": int(_field(record, "timeUnixNano", "time_unix_nano") or 0),
        "observed_time_unix_nano": int(_field(record, "observedTimeUnixNano", "observed_time_unix_nano") or 0),
        "severity_number": _severity_number(_field(record, "severityNumber", "severity_number")),
        "severity_text": _field(record, "severityText", "severity_text") or None,
        "body": decode_any_value(body) if body is not None else None,
        "attributes": decode_attributes(record.get("attributes")),
        "resource": decode_attributes(resource.get("attributes")),
        "scope_name": scope.get("name") or None,
        "scope_version": scope.get("version") or None,
        "trace_id": _decode_id(_field(record, "traceId", "trace_id"), 16),
        "span_id": _decode_id(_field(record, "spanId", "span_id"), 8),
    }


def _severity_number(value: Any) -> int:
    """SeverityNumber as int; pdata also accepts the enum name."""
    if value is None:
        return 0
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        return SeverityNumber.Value(value)
    return int(value)


def _decode_id(value: Any, size: int) -> str | None:
    """A trace/span id as lowercase hex, from hex (pdata) or base64 (protobuf JSON); None when absent or zero."""
    if not value:
        return None
    if len(value) == size * 2:
        raw = bytes.fromhex(value)
    else:
        raw = base64.b64decode(value, validate=True)
        if len(raw) != size:
            raise ValueError(f"id {value!r} is not {size} bytes")
    return raw.hex() if any(raw) else None


def decode_attributes(key_values: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """OTLP/JSON ``[{key, value}]`` as a dict of Python values (last one wins on duplicate keys)."""
    return {kv.get("key", ""): decode_any_value(kv.get("value") or {}) for kv in key_values or ()}


def decode_any_value(value: Mapping[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value: str, bool, int, float, list, dict, bytes, or None if empty."""
    for key, decode in _ANY_VALUE_DECODERS:
        if key in value:
            return decode(value[key])
    return None


def _decode_array(array: Mapping[str, Any]) -> list[Any]:
    """An ``arrayValue`` as a list."""
    return [decode_any_value(v) for v in array.get("values") or ()]


def _decode_kvlist(kvlist: Mapping[str, Any]) -> dict[str, Any]:
    """A ``kvlistValue`` as a dict."""
    return decode_attributes(kvlist.get("values"))


_ANY_VALUE_DECODERS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("stringValue", str),
    ("string_value", str),
    ("boolValue", bool),
    ("bool_value", bool),
    ("intValue", int),  # a decimal string in OTLP/JSON; int() also takes a plain number
    ("int_value", int),
    ("doubleValue", float),  # float() also takes "NaN", "Infinity", "-Infinity"
    ("double_value", float),
    ("arrayValue", _decode_array),
    ("array_value", _decode_array),
    ("kvlistValue", _decode_kvlist),
    ("kvlist_value", _decode_kvlist),
    ("bytesValue", lambda b64: base64.b64decode(b64, validate=True)),
    ("bytes_value", lambda b64: base64.b64decode(b64, validate=True)),
)
