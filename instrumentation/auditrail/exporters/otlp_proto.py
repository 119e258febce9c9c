"""OTLP protobuf for audit events, written straight from AuditEvents.

The SDK's route to the wire, ``AuditEvent -> SDK LogRecord -> encode_logs() -> SerializeToString()``, costs
about 60 us per event here (building BoundedAttributes and one protobuf message per attribute), which
caps a drain worker near 15,000 events/s and, being Python under the GIL, slows the app's own threads
while it runs. An audit event has a fixed shape, so its ``ExportLogsServiceRequest`` can be written as
bytes directly, the way protobuf lays them out: the same fields, in field-number order, proto3 defaults
left out. ``tests/test_otlp_proto.py`` proves the result equal, message for message and byte for byte,
to what ``encode_logs`` makes of the same events (DESIGN.md's mapping, via ``pipeline.to_log_record``).

Wire format: https://protobuf.dev/programming-guides/encoding/ ; messages from opentelemetry-proto
(``logs/v1/logs.proto``, ``common/v1/common.proto``, ``resource/v1/resource.proto``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from .. import semconv
from ..events import AuditEvent, severity_for
from ..native import native_function

_native_request = native_function("encode_request")  # the same bytes, several times faster; None: Python


__all__ = ["EventEncoder", "encode_any_value", "varint"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack


def varint(value: int) -> bytes:
    """A base-128 varint (negative int64 as its 64-bit two's complement, ten bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths below 16 KiB (almost every field of an audit event) come from a table: one list index.
_VARINT = [varint(i) for i in range(1 << 14)]


def _len(size: int) -> bytes:
    return _VARINT[size] if size < 16384 else varint(size)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (_VARINT[size] if size < 16384 else varint(size)) + payload


def encode_any_value(value: Any) -> bytes:
    """An ``AnyValue`` message for an attribute or body value (the SDK's _encode_value, as bytes)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if value < _INT64_MIN or value > _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):  # ArrayValue { repeated AnyValue values = 1 }
        return _field(b"\x2a", b"".join(_field(b"\x0a", encode_any_value(item)) for item in value))
    if isinstance(value, Mapping):  # KeyValueList { repeated KeyValue values = 1 }
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    if value is None:
        return b""
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message (key = 1, value = 2)."""
    encoded_key = _field(b"\x0a", key.encode("utf-8")) if key else b""
    return encoded_key + _field(b"\x12", encode_any_value(value))


def _attributes(attributes: Mapping[str, Any]) -> bytes:
    """Repeated ``KeyValue`` under the tag of a Resource's or scope's attributes (field 1 / 3 set by caller)."""
    return b"".join(_field(b"\x0a", _key_value(k, v)) for k, v in attributes.items())


# One string attribute of a LogRecord (field 6, KeyValue) = prefix for the key, then the value:
#   0x32 len(kv) | 0x0a len(key) key | 0x12 len(anyvalue) | 0x0a len(text) text
def _string_attribute_prefix(key: str) -> bytes:
    return _field(b"\x0a", key.encode("utf-8")) + b"\x12"


_STRING_FIELDS = (
    # (AuditEvent slot, attribute key): left out when None, in AuditEvent.attributes() order.
    ("actor", semconv.ACTOR),
    ("tenant", semconv.TENANT),
    ("source_ip", semconv.SOURCE_IP),
    ("reason", semconv.REASON),
    ("impersonator", semconv.IMPERSONATOR),
    ("impersonation_id", semconv.IMPERSONATION),
    ("approval_id", semconv.APPROVAL),
)
_KEY_PREFIX = {key: _string_attribute_prefix(key) for key in (
    semconv.EVENT_ID, semconv.ACTOR_TYPE, semconv.PAYLOAD, semconv.OUTCOME, semconv.RISK,
    *(key for _, key in _STRING_FIELDS))}


def _key_prefix(key: str) -> bytes:
    """The cached KeyValue opening for an attribute key met at run time (e.g. the chain's fields)."""
    prefix = _KEY_PREFIX[key] = _string_attribute_prefix(key)
    if len(_KEY_PREFIX) > 1024:  # keys are a small fixed set in practice; never let a stream of them grow this
        _KEY_PREFIX.clear()
    return prefix


def _string_attribute(prefix: bytes, text: str) -> bytes:
    raw = text.encode("utf-8")
    size = len(raw)
    if size < 126:  # the AnyValue (tag + 1-byte length + text) is under 128 bytes: every length is one byte
        kv = prefix + _VARINT[size + 2] + b"\x0a" + _VARINT[size] + raw
    else:
        kv = prefix + _field(b"", _field(b"\x0a", raw))
    return b"\x32" + _len(len(kv)) + kv


class EventEncoder:
    """Encodes batches of AuditEvents as one ``ExportLogsServiceRequest`` for a fixed resource and scope.

    ``resource`` and ``scope`` are the SDK's Resource and InstrumentationScope (anything with
    ``attributes``/``schema_url`` and ``name``/``version``/``attributes``/``schema_url``); they are encoded
    once. All events of a batch go in one ResourceLogs with one ScopeLogs, as encode_logs groups them.
    """

    def __init__(self, resource: Any, scope: Any, native: bool = True) -> None:
        # The native core writes the records of plain events (str attributes, ints, ...) and hands the
        # others back to _record; native=False: _record writes every one.
        self._native = _native_request if native else None
        resource_message = b""
        if resource is not None and resource.attributes:
            resource_message = _attributes(resource.attributes)
        self._resource_field = _field(b"\x0a", resource_message)  # ResourceLogs.resource = 1 (always set)
        self._resource_schema = _schema_url(getattr(resource, "schema_url", None))
        scope_message = b""
        if scope is not None:
            scope_message = b"".join((
                _field(b"\x0a", scope.name.encode()) if scope.name else b"",
                _field(b"\x12", scope.version.encode()) if scope.version else b"",
                b"".join(_field(b"\x1a", _key_value(k, v)) for k, v in (scope.attributes or {}).items()),
            ))
        self._scope_field = _field(b"\x0a", scope_message)  # ScopeLogs.scope = 1
        self._scope_schema = _schema_url(getattr(scope, "schema_url", None))
        # Severity (number, text) fields per risk level, and the encoded values that repeat across events.
        self._severity: dict[str, bytes] = {}
        self._cache: dict[tuple[str, Any], bytes] = {}
        self._bodies: dict[tuple[Any, ...], bytes] = {}
        self._who: dict[tuple[Any, ...], bytes] = {}
        self._how: dict[tuple[Any, ...], bytes] = {}

    @property
    def fields(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The request's resource and scope parts (resource field, resource schema, scope field, scope
        schema), for the native core's encoders."""
        return self._resource_field, self._resource_schema, self._scope_field, self._scope_schema

    def encode(self, events: Sequence[AuditEvent]) -> bytes:
        """The serialized ExportLogsServiceRequest for ``events`` (in order)."""
        if self._native is not None:
            return self._native(events if type(events) is list else list(events), self._record, *self.fields)
        records = b"".join(self._record(event) for event in events)
        scope_logs = self._scope_field + records + self._scope_schema
        resource_logs = self._resource_field + _field(b"\x12", scope_logs) + self._resource_schema
        return _field(b"\x0a", resource_logs) if events else b""

    def _record(self, event: AuditEvent) -> bytes:
        """``0x12 len LogRecord`` (ScopeLogs.log_records = 2), the fields of to_log_record()/encode_logs.

        Values that repeat across events (tenant, actor, IP, reason, chain id, the body summary, ...) are
        encoded once and looked up after (a bounded cache); the unique ones (event id, payload, hashes, seq,
        times) are written each time.
        """
        cache = self._cache
        t = event.time_unix_nano
        timestamp = _pack_fixed64(t) if t else b""
        severity = self._severity.get(event.risk)
        if severity is None:
            number, text = severity_for(event.risk)
            severity = self._severity[event.risk] = b"\x10" + varint(number) + _field(b"\x1a", text.encode())
        body_key = (event.event_type, event.actor, event.impersonator, event.tenant, event.outcome)
        body = self._bodies.get(body_key)
        if body is None:
            body = self._remember(self._bodies, body_key,  # 5 body: AnyValue{string_value}
                                  _field(b"\x2a", _field(b"\x0a", event.body().encode("utf-8"))))
        parts = [
            b"\x09" + timestamp if t else b"",                  # 1 time_unix_nano (fixed64)
            severity,                                           # 2 severity_number, 3 severity_text
            body,
            _string_attribute(_EVENT_ID_PREFIX, event.event_id),  # 6 attributes ...
        ]
        append = parts.append
        # Who, where and how: the attributes before the payload, and the two after it, repeat across events
        # together: one lookup each.
        who = (event.actor, event.tenant, event.source_ip, event.reason, event.impersonator,
               event.impersonation_id, event.approval_id, event.actor_type)
        encoded = self._who.get(who)
        if encoded is None:
            encoded = self._remember(self._who, who, b"".join(
                [self._attribute(key, value) for (_, key), value in zip(_STRING_FIELDS, who, strict=False)
                 if value is not None] + [self._attribute(semconv.ACTOR_TYPE, event.actor_type)]))
        append(encoded)
        payload = event.payload
        append(_string_attribute(_PAYLOAD_PREFIX, payload) if type(payload) is str
               else _field(b"\x32", _key_value(semconv.PAYLOAD, payload)))
        how = (event.outcome, event.risk)
        encoded = self._how.get(how)
        if encoded is None:
            encoded = self._remember(self._how, how, self._attribute(semconv.OUTCOME, event.outcome)
                                     + self._attribute(semconv.RISK, event.risk))
        append(encoded)
        if event.extra:
            for key, value in event.extra.items():
                kind = type(value)
                if kind is str and key in _UNIQUE_KEYS:  # the chain's hashes: never repeat
                    append(_string_attribute(_KEY_PREFIX.get(key) or _key_prefix(key), value))
                elif kind is int and 0 <= value < 16384:  # the chain's seq, mostly
                    prefix = _KEY_PREFIX.get(key) or _key_prefix(key)
                    any_value = b"\x18" + _VARINT[value]
                    kv = prefix + _VARINT[len(any_value)] + any_value
                    append(b"\x32" + _VARINT[len(kv)] + kv)
                elif kind is str:  # e.g. the chain id: the same for many events
                    append(cache.get((key, value)) or self._attribute(key, value))
                else:  # (None included: the SDK sends it as an empty AnyValue)
                    append(_field(b"\x32", _key_value(key, value)))
        if event.trace_flags:
            append(b"\x45" + struct.pack("<I", event.trace_flags))          # 8 flags (fixed32)
        if event.trace_id:
            append(b"\x4a\x10" + event.trace_id.to_bytes(16, "big"))        # 9 trace_id
        if event.span_id:
            append(b"\x52\x08" + event.span_id.to_bytes(8, "big"))          # 10 span_id
        if t:
            append(b"\x59" + timestamp)                                     # 11 observed_time_unix_nano
        if event.event_type:
            name = cache.get(("", event.event_type))
            if name is None:
                name = cache[("", event.event_type)] = _field(b"\x62", event.event_type.encode("utf-8"))  # 12 event_name
            append(name)
        record = b"".join(parts)
        return b"\x12" + _len(len(record)) + record

    @staticmethod
    def _remember(cache: dict[tuple[Any, ...], bytes], key: tuple[Any, ...], encoded: bytes) -> bytes:
        """Keep `encoded` under `key` (the cache is cleared when it grows past its limit)."""
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = encoded
        return encoded

    def _attribute(self, key: str, value: Any) -> bytes:
        """Encode a repeating attribute and remember it (the cache is cleared when it grows past its limit)."""
        encoded = (_string_attribute(_KEY_PREFIX.get(key) or _key_prefix(key), value) if type(value) is str
                   else _field(b"\x32", _key_value(key, value)))
        cache = self._cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[(key, value)] = encoded
        return encoded


_CACHE_LIMIT = 8192
_UNIQUE_KEYS = frozenset({semconv.CHAIN_PREV, semconv.CHAIN_HASH})
_EVENT_ID_PREFIX = _KEY_PREFIX[semconv.EVENT_ID]
_PAYLOAD_PREFIX = _KEY_PREFIX[semconv.PAYLOAD]


def _schema_url(url: str | None) -> bytes:
    """``schema_url = 3`` of ResourceLogs / ScopeLogs, left out when empty."""
    return _field(b"\x1a", url.encode("utf-8")) if url else b""
