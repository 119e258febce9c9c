"""OTLP/HTTP logs -> ``otel_logs`` rows, exactly as the collector's clickhouse exporter writes them.

The store service accepts what a collector would (``POST /v1/logs``, protobuf or JSON, optionally gzip)
and writes the rows the contrib ``clickhouseexporter`` (v0.161.0, ``exporter_logs.go`` and
``internal/util.go``) would write for the same request, so the audit_events materialized view, Grafana
and the exporter itself all see one table. Per log record:

=====================  ======================================================================
column                 value (pdata / Go)
=====================  ======================================================================
Timestamp              ``time_unix_nano``, or ``observed_time_unix_nano`` when it is 0 (ns)
TraceId / SpanId       lowercase hex, ``""`` when absent or all zeros
TraceFlags             ``uint8(flags)``
SeverityText           as sent
SeverityNumber         ``uint8(severity_number)``
ServiceName            resource attribute ``service.name`` via ``AsString()``, else ``""``
Body                   ``body.AsString()``
ResourceSchemaUrl      ``ResourceLogs.schema_url``
ResourceAttributes     every resource attribute, value ``AsString()``, sorted by key (duplicates kept)
ScopeSchemaUrl         ``ScopeLogs.schema_url``
ScopeName/ScopeVersion the instrumentation scope's
ScopeAttributes        scope attributes, as above
LogAttributes          record attributes, as above
EventName              ``event_name``, written only when the table has the column (the exporter
                       checks the same with ``DESCRIBE TABLE``)
=====================  ======================================================================

``AsString()`` (pdata ``Value.AsString``): strings as they are, ``true``/``false``, ints in decimal,
doubles as Go's ``float64AsString`` (shortest digits, exponent below 1e-6 and from 1e21, ``e-7`` not
``e-07``; ``NaN``, ``Infinity``), bytes base64, maps and slices as Go's ``json.Encoder`` (no HTML
escaping) of ``AsRaw()`` (sorted keys; ``""`` when a NaN or infinity inside makes it fail), an empty value
``""``. pdata v1.67.0 is what v0.161.0 builds with; tests/data/pdata_asstring_vectors.json holds values
produced by that pdata itself.

Decoding. Protobuf is read in slices of records (:func:`protobuf_slices`), so that neither upb's objects for
the whole request (~6x its size) nor its Python rows (~5x) are ever held at once. upb first reads the
request's skeleton (logs.proto's messages with each LogRecord left as bytes: every level validated but the
records' insides), then each slice of ~256 KiB of records wrapped at the depth the request holds them: that is
the validation (truncation, wire types, UTF-8, nesting), in C, exactly what reading the whole request refuses;
the service reads every slice before it writes anything. The rows are read slice by slice by a hand-written
wire walker,
~3x faster than reading the upb objects field by field from Python (measured: 22k vs ~70k records/s with 15
attributes a record); anything it does not expect (a repeated singular field, unknown fields, the
profiles-only ``*_strindex`` fields) sends that slice to the plain reading of its upb objects
(:func:`rows_from_message` reads whole requests that way: the tests' oracle). Resource and scope values come
from the skeleton's upb objects. JSON follows pdata's OTLP/JSON reader: camelCase or snake_case names, int64s
as numbers or strings, hex trace/span ids, enum names or numbers. decode_json is the reference of that reading:
the service reads JSON with the native core's streaming transcoder into protobuf (ingest_json.py, the same
semantics, proven on a corpus) and runs the protobuf path; decode_json where the core is not built.

Writing: one ``INSERT ... FORMAT JSONColumns`` per request, built with orjson (clickhouse-connect's
Native encoder manages ~17k rows/s with three Map columns here, JSONColumns ~100k). The service encodes each
slice's rows into the document (:class:`EncodedRows`) and lets them go; the request is fully decoded and
validated (and its tenants checked) before the insert, and a single-block insert is all or nothing, so a
malformed request writes nothing.

On an embedded store the service first offers protobuf requests to ingest_fast.py, where the engine decodes
them, concurrent requests coalesced into one insert (same rows, 2-2.3x the events/s of this path in
benchmarks/storage.py with 8 senders); what it declines comes here.
"""

from __future__ import annotations

import base64
import math
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValueList

from .ingest_limits import DEFAULT_MAX_BODY, IngestError, IngestLimits, LimitError, check_json, check_protobuf

__all__ = [
    "BASE_COLUMNS",
    "FEATURE_COLUMNS",
    "IngestError",
    "EncodedRows",
    "LogBatch",
    "LogWriter",
    "any_value_as_string",
    "content_kind",
    "decode_json",
    "decode_protobuf",
    "decode_request",
    "protobuf_slices",
    "go_float",
    "go_json",
    "rows_from_message",
]

# The exporter's INSERT column list (internal/sqltemplates/logs_insert.sql), then its feature columns.
BASE_COLUMNS: tuple[str, ...] = (
    "Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText", "SeverityNumber", "ServiceName", "Body",
    "ResourceSchemaUrl", "ResourceAttributes", "ScopeSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
    "LogAttributes",
)
FEATURE_COLUMNS: tuple[str, ...] = ("EventName",)

SERVICE_NAME = "service.name"


# A map column value: a dict, or a list of (key, value) pairs when the request repeats a key (the exporter
# keeps every pair, in order; ClickHouse's Map keeps them too and ``m['k']`` returns the first).
AttrMap = dict[str, str] | list[tuple[str, str]]


@dataclass(slots=True)
class LogBatch:
    """Decoded log records, one list per otel_logs column (columnar: what the insert sends)."""

    timestamps: list[int] = field(default_factory=list)  # ns since the epoch (signed, as Go's int64 cast)
    trace_ids: list[str] = field(default_factory=list)
    span_ids: list[str] = field(default_factory=list)
    trace_flags: list[int] = field(default_factory=list)
    severity_texts: list[str] = field(default_factory=list)
    severity_numbers: list[int] = field(default_factory=list)
    service_names: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    resource_schema_urls: list[str] = field(default_factory=list)
    resource_attributes: list[AttrMap] = field(default_factory=list)
    scope_schema_urls: list[str] = field(default_factory=list)
    scope_names: list[str] = field(default_factory=list)
    scope_versions: list[str] = field(default_factory=list)
    scope_attributes: list[AttrMap] = field(default_factory=list)
    log_attributes: list[AttrMap] = field(default_factory=list)
    event_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.timestamps)

    def extend(self, other: LogBatch) -> None:
        """Append the rows of `other`."""
        for mine, theirs in zip(self.columns().values(), other.columns().values(), strict=True):
            mine.extend(theirs)

    def columns(self) -> dict[str, list[Any]]:
        """Column name -> values, base columns then feature columns."""
        return {
            "Timestamp": self.timestamps, "TraceId": self.trace_ids, "SpanId": self.span_ids,
            "TraceFlags": self.trace_flags, "SeverityText": self.severity_texts,
            "SeverityNumber": self.severity_numbers, "ServiceName": self.service_names, "Body": self.bodies,
            "ResourceSchemaUrl": self.resource_schema_urls, "ResourceAttributes": self.resource_attributes,
            "ScopeSchemaUrl": self.scope_schema_urls, "ScopeName": self.scope_names,
            "ScopeVersion": self.scope_versions, "ScopeAttributes": self.scope_attributes,
            "LogAttributes": self.log_attributes, "EventName": self.event_names,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One dict per record (tests and debugging; the insert stays columnar)."""
        columns = self.columns()
        return [{name: values[i] for name, values in columns.items()} for i in range(len(self))]

    def attribute_values(self, key: str) -> set[str | None]:
        """The distinct values of one log attribute over the batch (None where a record lacks it)."""
        return {_map_get(attributes, key) for attributes in self.log_attributes}


def _map_get(attributes: AttrMap, key: str) -> str | None:
    """``m[key]`` as ClickHouse reads it: the first pair with that key."""
    if isinstance(attributes, dict):
        return attributes.get(key)
    for name, value in attributes:
        if name == key:
            return value
    return None


# --------------------------------------------------------------------------------------------------
# pdata's AsString


def go_float(number: float) -> str:
    """pdata's ``float64AsString``: ES6-style shortest digits; NaN, Infinity, -Infinity."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return _go_float_digits(number)


def _go_float_digits(number: float) -> str:
    """A finite double as Go's ``strconv`` 'f' (or 'e' below 1e-6 and from 1e21, exponent trimmed)."""
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    text = repr(number)  # the shortest round-trip digits, as strconv's precision -1
    magnitude = abs(number)
    if 1e-6 <= magnitude < 1e21:
        if "e" in text:
            text = format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    mantissa, exponent = text.split("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    sign = exponent[0]
    digits = exponent[1:].lstrip("0") or "0"
    if len(digits) < 2 and sign == "+":
        digits = digits.rjust(2, "0")  # Go trims only "e-0d" to "e-d"; "e+21" stays
    return f"{mantissa}e{sign}{digits}"


class _Unsupported(ValueError):
    """encoding/json refuses the value (NaN / infinity): AsString gives ""."""


_GO_STRING_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json_string(text: str) -> str:
    """A JSON string as Go's json.Encoder writes it with SetEscapeHTML(false) (pdata's AsString of maps)."""
    encoded = orjson.dumps(text).decode()  # escapes ", \\, \\b \\f \\n \\r \\t, other controls as \\u00xx: as Go
    if "\u2028" in text or "\u2029" in text:  # Go escapes these two even without HTML escaping
        encoded = "".join(_GO_STRING_ESCAPES.get(c, c) for c in encoded)
    return encoded


def go_json(raw: Any) -> str:
    """``json.Marshal`` of a pdata ``AsRaw()`` value; raises _Unsupported for NaN / infinity."""
    if raw is None:
        return "null"
    if raw is True:
        return "true"
    if raw is False:
        return "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            raise _Unsupported(raw)
        return _go_float_digits(raw)
    if isinstance(raw, str):
        return _go_json_string(raw)
    if isinstance(raw, bytes):  # Go: []byte as base64; an empty one is a nil slice, null
        return '"' + base64.b64encode(raw).decode() + '"' if raw else "null"
    if isinstance(raw, dict):
        # Go sorts map keys by their UTF-8 bytes, which is code point order.
        return "{" + ",".join(_go_json_string(k) + ":" + go_json(raw[k]) for k in sorted(raw)) + "}"
    if isinstance(raw, list):
        return "[" + ",".join(go_json(v) for v in raw) + "]"
    raise TypeError(f"not a pdata raw value: {type(raw).__name__}")


def _raw_as_string(raw: Any) -> str:
    """AsString of a map or slice given its raw value."""
    try:
        return go_json(raw)
    except _Unsupported:
        return ""


def _int64(value: int) -> int:
    """A varint read as int64 (two's complement)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def any_value_as_string(value: AnyValue) -> str:
    """pdata ``Value.AsString()`` of an upb AnyValue."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None or kind == "string_value_strindex":
        return ""  # pdata has no string-table values for logs: an empty value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return go_float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return _raw_as_string(_any_raw(value))


def _any_raw(value: AnyValue) -> Any:
    """pdata ``Value.AsRaw()`` of an upb AnyValue."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return bytes(value.bytes_value)
    if kind == "array_value":
        return [_any_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_raw(kv.value) for kv in value.kvlist_value.values}  # last key wins, as AsRaw
    return None


def _attributes(key_values: Iterable[Any]) -> AttrMap:
    """Attributes as a map column value (see _attr_map)."""
    return _attr_map([(kv.key, any_value_as_string(kv.value)) for kv in key_values])


def _first_as_string(key_values: Iterable[Any], key: str) -> str:
    """pcommon.Map.Get(key).AsString(): the first pair with that key, else ""."""
    for kv in key_values:
        if kv.key == key:
            return any_value_as_string(kv.value)
    return ""


def _timestamp(time_unix_nano: int, observed: int) -> int:
    """The exporter's timestamp: the record time, else the observed time; as Go's int64 conversion."""
    chosen = time_unix_nano or observed
    return chosen - (1 << 64) if chosen >= 1 << 63 else chosen


def _hex_id(raw: bytes, size: int, name: str) -> str:
    """traceutil.*ToHexOrEmptyString; pdata refuses ids of another length."""
    if not raw:
        return ""
    if len(raw) != size:
        raise IngestError(f"{name} must be {size} bytes, got {len(raw)}")
    return raw.hex() if any(raw) else ""


@dataclass(frozen=True, slots=True)
class _Heads:
    """The columns every record of one ScopeLogs shares: its resource's and its scope's."""

    service_name: str
    resource_url: str
    resource_map: AttrMap
    scope_url: str
    scope_name: str
    scope_version: str
    scope_map: AttrMap

    @classmethod
    def of(cls, resource: tuple[str, str, AttrMap], scope_logs: Any) -> _Heads:
        """`resource` from _resource_heads, `scope_logs` an upb ScopeLogs (a request's, or a skeleton's)."""
        scope = scope_logs.scope
        return cls(*resource, scope_logs.schema_url, scope.name, scope.version, _attributes(scope.attributes))

    def extend(self, batch: LogBatch, count: int) -> None:
        """Append these columns for `count` records."""
        batch.service_names.extend([self.service_name] * count)
        batch.resource_schema_urls.extend([self.resource_url] * count)
        batch.resource_attributes.extend([self.resource_map] * count)
        batch.scope_schema_urls.extend([self.scope_url] * count)
        batch.scope_names.extend([self.scope_name] * count)
        batch.scope_versions.extend([self.scope_version] * count)
        batch.scope_attributes.extend([self.scope_map] * count)


def _resource_heads(resource_logs: Any) -> tuple[str, str, AttrMap]:
    """(service name, schema url, attribute map) of an upb ResourceLogs."""
    attributes = resource_logs.resource.attributes
    return _first_as_string(attributes, SERVICE_NAME), resource_logs.schema_url, _attributes(attributes)


def rows_from_message(request: ExportLogsServiceRequest) -> LogBatch:
    """The exporter's rows for a parsed request, read field by field from the upb objects."""
    batch = LogBatch()
    for resource_logs in request.resource_logs:
        resource = _resource_heads(resource_logs)
        for scope_logs in resource_logs.scope_logs:
            _records_from_message(scope_logs.log_records, batch, _Heads.of(resource, scope_logs))
    return batch


def _records_from_message(records: Sequence[Any], batch: LogBatch, heads: _Heads) -> None:
    """Append the rows of upb LogRecords that share `heads`."""
    heads.extend(batch, len(records))
    for record in records:
        batch.timestamps.append(_timestamp(record.time_unix_nano, record.observed_time_unix_nano))
        batch.trace_ids.append(_hex_id(record.trace_id, 16, "trace_id"))
        batch.span_ids.append(_hex_id(record.span_id, 8, "span_id"))
        batch.trace_flags.append(record.flags & 0xFF)
        batch.severity_texts.append(record.severity_text)
        batch.severity_numbers.append(record.severity_number & 0xFF)
        batch.bodies.append(any_value_as_string(record.body) if record.HasField("body") else "")
        batch.log_attributes.append(_attributes(record.attributes))
        batch.event_names.append(record.event_name)


# --------------------------------------------------------------------------------------------------
# Protobuf: the fast wire walker


class _Fallback(Exception):
    """Something the fast walker does not handle: decode with rows_from_message instead."""


_unpack_double = struct.Struct("<d").unpack_from
_unpack_fixed64 = struct.Struct("<Q").unpack_from
_unpack_fixed32 = struct.Struct("<I").unpack_from


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at pos."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Fallback


def _len_field(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the length-delimited payload whose length varint is at pos."""
    length = data[pos]
    if length < 0x80:
        start = pos + 1
    else:
        length, start = _varint(data, pos)
    return start, start + length


def _any_string(data: bytes, pos: int, end: int) -> str:
    """AsString of the AnyValue encoded in data[pos:end]."""
    if pos == end:
        return ""
    tag = data[pos]
    if tag == 0x0A:  # string_value: the common case
        start, stop = _len_field(data, pos + 1)
        if stop != end:
            raise _Fallback
        return data[start:stop].decode()
    if tag == 0x10:  # bool_value
        value, stop = _varint(data, pos + 1)
        result = "true" if value else "false"
    elif tag == 0x18:  # int_value
        value, stop = _varint(data, pos + 1)
        result = str(_int64(value))
    elif tag == 0x21:  # double_value
        stop = pos + 9
        result = go_float(_unpack_double(data, pos + 1)[0])
    elif tag == 0x3A:  # bytes_value
        start, stop = _len_field(data, pos + 1)
        result = base64.b64encode(data[start:stop]).decode()
    elif tag == 0x2A or tag == 0x32:  # array_value / kvlist_value: rare, read through upb
        start, stop = _len_field(data, pos + 1)
        if stop != end:
            raise _Fallback
        message = (ArrayValue if tag == 0x2A else KeyValueList).FromString(data[start:stop])
        if tag == 0x2A:
            return _raw_as_string([_any_raw(v) for v in message.values])
        return _raw_as_string({kv.key: _any_raw(kv.value) for kv in message.values})
    else:
        raise _Fallback
    if stop != end:
        raise _Fallback  # a second oneof member or a repeated field: proto merge rules, not ours
    return result


def _key_values(data: bytes, pos: int, end: int, out: list[tuple[str, str]]) -> None:
    """Append (key, AsString) of one KeyValue at data[pos:end] (its field tag already read)."""
    key = ""
    value = ""
    seen_value = False
    while pos < end:
        tag = data[pos]
        start, stop = _len_field(data, pos + 1)
        if tag == 0x0A:
            key = data[start:stop].decode()
        elif tag == 0x12 and not seen_value:
            value = _any_string(data, start, stop)
            seen_value = True
        else:
            raise _Fallback
        pos = stop
    out.append((key, value))


def _by_key(pair: tuple[str, str]) -> str:
    return pair[0]


def _attr_map(pairs: list[tuple[str, str]]) -> AttrMap:
    """A map column value as the exporter sends it: pairs sorted by key (clickhouse-go's orderedmap.CollectN
    sorts them; Go compares UTF-8 bytes, which is code point order), every pair kept; a dict when no key
    repeats. Go's sort is not stable, but for the few pairs of one key it is insertion sort: stable."""
    pairs.sort(key=_by_key)
    as_dict = dict(pairs)
    return as_dict if len(as_dict) == len(pairs) else pairs


def decode_protobuf(data: bytes, limits: IngestLimits | None = None) -> LogBatch:
    """Rows of a protobuf ExportLogsServiceRequest; IngestError when it is not one, LimitError (before upb
    reads it) when it exceeds `limits`. All of them at once: the service reads them slice by slice
    (protobuf_slices), each one encoded before the next is decoded."""
    if limits is not None:
        check_protobuf(data, limits)
    batch = LogBatch()
    for part in protobuf_slices(data):
        batch.extend(part)
    return batch


# Records of one slice, by their size on the wire: its upb objects (~6x) and Python rows (~5x) are what the
# decoding holds at once, beside the request's skeleton (~1x: its records as bytes).
SLICE_BYTES = 256 << 10


def protobuf_slices(data: bytes, slice_bytes: int = SLICE_BYTES) -> Iterator[LogBatch]:
    """The rows of a protobuf ExportLogsServiceRequest in request order, in slices of records of about
    `slice_bytes` on the wire; IngestError where it is not one (at the start, or at the slice where upb stops:
    read every slice before writing anything). upb reads the request's skeleton (every message but the
    LogRecords, which stay bytes), then each slice of records wrapped at the depth the request holds them (upb's
    nesting limit counts from the top), so it accepts and refuses exactly what
    ``ExportLogsServiceRequest.FromString`` does, without ever holding the upb objects of the whole request
    (~6x its size) or its rows (~5x)."""
    skeleton = _parse(data, _skeleton_class())
    del data  # the skeleton is all that is read from here on (the caller may drop the body)
    scopes = []
    for resource_logs in skeleton.resource_logs:
        resource = _resource_heads(resource_logs)
        scopes.extend((_Heads.of(resource, scope_logs), scope_logs.log_records)
                      for scope_logs in resource_logs.scope_logs)
    for heads, records in scopes:
        for body in _slice_bodies(records, slice_bytes):
            message = _parse(_wrap(body))  # the slice's validation
            batch = LogBatch()
            try:
                _walk_records(body, batch, heads)
            except IngestError:
                raise
            except Exception:  # _Fallback, or anything the walker did not foresee: the plain reading decides
                batch = LogBatch()
                _records_from_message(message.resource_logs[0].scope_logs[0].log_records, batch, heads)
            del message
            yield batch


def _parse(data: bytes, kind: Any = ExportLogsServiceRequest) -> Any:
    try:
        return kind.FromString(data)
    except DecodeError as error:
        raise IngestError(f"malformed protobuf ExportLogsServiceRequest: {error}") from None


_SKELETON: list[Any] = []


def _skeleton_class() -> Any:
    """ExportLogsServiceRequest with ``ScopeLogs.log_records`` as ``repeated bytes``: logs.proto's own
    ResourceLogs and ScopeLogs (every field as upb reads it) under another package, built once."""
    if _SKELETON:
        return _SKELETON[0]
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.logs.v1 import logs_pb2

    file = descriptor_pb2.FileDescriptorProto()
    logs_pb2.DESCRIPTOR.CopyToProto(file)
    source, package = "." + file.package + ".", "auditrail.ingest.skeleton"
    file.name, file.package = "auditrail/ingest/skeleton.proto", package
    kept = [message for message in file.message_type if message.name in ("ResourceLogs", "ScopeLogs")]
    del file.message_type[:]
    del file.enum_type[:]
    file.message_type.extend(kept)
    for message in file.message_type:
        for field_ in message.field:
            if message.name == "ScopeLogs" and field_.name == "log_records":
                field_.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                field_.ClearField("type_name")
            elif field_.type_name.startswith(source):
                field_.type_name = f".{package}.{field_.type_name.removeprefix(source)}"
    request = file.message_type.add(name="ExportLogsServiceRequest")
    request.field.add(name="resource_logs", number=1, label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, type_name=f".{package}.ResourceLogs")
    pool = descriptor_pool.Default()
    pool.Add(file)
    _SKELETON.append(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.ExportLogsServiceRequest")))
    return _SKELETON[0]


def _delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length (varint), the payload."""
    size = len(payload)
    head = bytearray([tag])
    while size >= 0x80:
        head.append(size & 0x7F | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + payload


def _wrap(scope_body: bytes) -> bytes:
    """A request of one ResourceLogs of one ScopeLogs whose fields are `scope_body`."""
    return _delimited(0x0A, _delimited(0x12, scope_body))


def _slice_bodies(records: Sequence[bytes], slice_bytes: int) -> Iterator[bytes]:
    """ScopeLogs bodies (field 2 of each record) of consecutive records, each about slice_bytes (one at least)."""
    parts: list[bytes] = []
    size = 0
    for record in records:
        length = len(record)
        if length < 0x4000:  # the common case, inline: a tag and a length of one or two bytes
            parts.append(bytes((0x12, length)) if length < 0x80 else bytes((0x12, length & 0x7F | 0x80, length >> 7)))
            parts.append(record)
        else:
            parts.append(_delimited(0x12, record))
        size += length
        if size >= slice_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _walk_records(data: bytes, batch: LogBatch, heads: _Heads) -> None:
    """Append the rows of the LogRecords (field 2, each) that `data` holds, sharing `heads`."""
    records = []
    pos, end = 0, len(data)
    while pos < end:
        start, stop = _len_field(data, pos + 1)
        records.append((start, stop))
        pos = stop
    heads.extend(batch, len(records))

    timestamps = batch.timestamps
    trace_ids = batch.trace_ids
    span_ids = batch.span_ids
    flags_column = batch.trace_flags
    severity_texts = batch.severity_texts
    severity_numbers = batch.severity_numbers
    bodies = batch.bodies
    log_attributes = batch.log_attributes
    event_names = batch.event_names
    for pos, end in records:
        time_unix_nano = observed = 0
        severity_number = 0
        severity_text = body = event_name = ""
        trace_id = span_id = b""
        flags = 0
        attrs: dict[str, str] = {}
        count = 0
        body_seen = False
        while pos < end:
            tag = data[pos]
            if tag == 0x32:  # attributes
                count += 1
                # The common shape, KeyValue{key, value{string_value}}, read in place: lengths of one or two
                # varint bytes inline (values up to 16 KiB), anything else through _key_values.
                byte = data[pos + 1]
                if byte < 0x80:
                    start = pos + 2
                    stop = start + byte
                else:
                    high = data[pos + 2]
                    if high < 0x80:
                        start = pos + 3
                        stop = start + ((byte & 0x7F) | (high << 7))
                    else:
                        start, stop = _len_field(data, pos + 1)
                if data[start] == 0x0A and data[start + 1] < 0x80:
                    kstop = start + 2 + data[start + 1]
                    if data[kstop] == 0x12:
                        byte = data[kstop + 1]
                        if byte < 0x80:
                            vstart = kstop + 2
                        else:
                            high = data[kstop + 2]
                            vstart = kstop + 3 if high < 0x80 else -1
                            byte = (byte & 0x7F) | (high << 7)
                        if vstart > 0 and vstart + byte == stop and data[vstart] == 0x0A:
                            slen = data[vstart + 1]
                            if slen < 0x80:
                                sstart = vstart + 2
                            else:
                                high = data[vstart + 2]
                                sstart = vstart + 3 if high < 0x80 else -1
                                slen = (slen & 0x7F) | (high << 7)
                            if sstart > 0 and sstart + slen == stop:
                                attrs[data[start + 2:kstop].decode()] = data[sstart:stop].decode()
                                pos = stop
                                continue
                pairs: list[tuple[str, str]] = []
                _key_values(data, start, stop, pairs)
                attrs[pairs[0][0]] = pairs[0][1]
                pos = stop
            elif tag == 0x09:  # time_unix_nano, fixed64
                time_unix_nano = _unpack_fixed64(data, pos + 1)[0]
                pos += 9
            elif tag == 0x59:  # observed_time_unix_nano, fixed64
                observed = _unpack_fixed64(data, pos + 1)[0]
                pos += 9
            elif tag == 0x10:  # severity_number
                severity_number, pos = _varint(data, pos + 1)
            elif tag == 0x45:  # flags, fixed32
                flags = _unpack_fixed32(data, pos + 1)[0]
                pos += 5
            elif tag == 0x38:  # dropped_attributes_count
                _, pos = _varint(data, pos + 1)
            else:
                start, stop = _len_field(data, pos + 1)
                if tag == 0x1A:
                    severity_text = data[start:stop].decode()
                elif tag == 0x2A and not body_seen:
                    body = _any_string(data, start, stop)
                    body_seen = True
                elif tag == 0x4A:
                    trace_id = data[start:stop]
                elif tag == 0x52:
                    span_id = data[start:stop]
                elif tag == 0x62:
                    event_name = data[start:stop].decode()
                else:
                    raise _Fallback
                pos = stop
        timestamps.append(_timestamp(time_unix_nano, observed))
        trace_ids.append(_hex_id(trace_id, 16, "trace_id"))
        span_ids.append(_hex_id(span_id, 8, "span_id"))
        flags_column.append(flags & 0xFF)
        severity_texts.append(severity_text)
        severity_numbers.append(severity_number & 0xFF)
        bodies.append(body)
        if len(attrs) != count:
            raise _Fallback  # a repeated key: the exporter keeps every pair
        log_attributes.append(dict(sorted(attrs.items())) if count > 1 else attrs)
        event_names.append(event_name)


# --------------------------------------------------------------------------------------------------
# OTLP/JSON, as pdata reads it


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _json_object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IngestError(f"{where}: expected an object")
    return value


def _json_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(f"{where}: expected an array")
    return value


def _json_string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IngestError(f"{where}: expected a string")
    return value


def _json_uint(value: Any, where: str, bits: int) -> int:
    """An unsigned integer as a JSON number or a decimal string."""
    if value is None:
        return 0
    if type(value) is float and value.is_integer():  # 1513.0: an integer to JSON (Schema), as protojson reads it
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise IngestError(f"{where}: expected an integer")
    try:
        number = int(value)
    except ValueError:
        raise IngestError(f"{where}: expected an integer, got {value!r}") from None
    if not 0 <= number < 1 << bits:
        raise IngestError(f"{where}: {number} out of range")
    return number


def _json_int64(value: Any, where: str) -> int:
    if type(value) is float and value.is_integer():  # as in _json_uint
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise IngestError(f"{where}: expected an integer")
    try:
        number = int(value)
    except ValueError:
        raise IngestError(f"{where}: expected an integer, got {value!r}") from None
    if not -(1 << 63) <= number < 1 << 63:
        raise IngestError(f"{where}: {number} out of int64 range")
    return number


def _json_double(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise IngestError(f"{where}: expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    raise IngestError(f"{where}: expected a number")


def _json_id(value: Any, size: int, where: str) -> str:
    """A hex trace/span id as pdata reads it: empty, or exactly 2*size hex digits."""
    text = _json_string(value, where)
    if not text:
        return ""
    if len(text) != size * 2:
        raise IngestError(f"{where}: expected {size * 2} hex digits")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise IngestError(f"{where}: not hex") from None
    if len(raw) != size:  # fromhex skips whitespace: 30 digits and 2 spaces made a 15-byte id
        raise IngestError(f"{where}: not hex")
    return raw.hex() if any(raw) else ""


_SEVERITY_NAMES: dict[str, int] = {}


def _severity_number(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        if not _SEVERITY_NAMES:
            from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

            _SEVERITY_NAMES.update({name: number for name, number in SeverityNumber.items()})
        if value not in _SEVERITY_NAMES:
            raise IngestError(f"{where}: unknown severity {value!r}")
        return _SEVERITY_NAMES[value]
    number = _json_int64(value, where)
    if not -(1 << 31) <= number < 1 << 31:
        raise IngestError(f"{where}: out of int32 range")
    return number & 0xFF


def _json_any_raw(value: Any, where: str) -> Any:
    """AsRaw of an OTLP/JSON AnyValue object."""
    obj = _json_object(value, where)
    for camel, snake in _ANY_KEYS:
        if camel in obj or snake in obj:
            item = _get(obj, camel, snake)
            if camel == "stringValue":
                return _json_string(item, where)
            if camel == "boolValue":
                if not isinstance(item, bool):
                    raise IngestError(f"{where}: boolValue must be true or false")
                return item
            if camel == "intValue":
                return _json_int64(item, where)
            if camel == "doubleValue":
                return _json_double(item, where)
            if camel == "bytesValue":
                try:
                    return base64.b64decode(_json_string(item, where), validate=True)
                except ValueError:
                    raise IngestError(f"{where}: bytesValue is not base64") from None
            values = _json_list(_json_object(item, where).get("values"), where)
            if camel == "arrayValue":
                return [_json_any_raw(v, where) for v in values]
            return {_json_string(_json_object(kv, where).get("key"), where):
                    _json_any_raw(_json_object(kv, where).get("value"), where) for kv in values}
    return None


_ANY_KEYS = (("stringValue", "string_value"), ("boolValue", "bool_value"), ("intValue", "int_value"),
             ("doubleValue", "double_value"), ("arrayValue", "array_value"), ("kvlistValue", "kvlist_value"),
             ("bytesValue", "bytes_value"))


def _json_as_string(value: Any, where: str) -> str:
    """AsString of an OTLP/JSON AnyValue object."""
    if type(value) is dict and len(value) == 1:
        text = value.get("stringValue")
        if type(text) is str:
            return text
    raw = _json_any_raw(value, where)
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        return go_float(raw)
    if isinstance(raw, bytes):
        return base64.b64encode(raw).decode()
    return _raw_as_string(raw)


def _json_attributes(value: Any, where: str) -> list[tuple[str, str]]:
    pairs = []
    for kv in _json_list(value, where):
        if type(kv) is not dict:
            raise IngestError(f"{where}: expected an object")
        pairs.append((_json_string(kv.get("key"), where), _json_as_string(kv.get("value"), where)))
    return pairs


def decode_json(data: bytes, limits: IngestLimits | None = None) -> LogBatch:
    """Rows of an OTLP/JSON ExportLogsServiceRequest; IngestError when it is not one, LimitError (before the
    parse, or at the first record over) when it exceeds `limits`."""
    if limits is not None:
        check_json(data, limits)
    # A record can only exceed the per-record limit in a body larger than it: only then is each one measured.
    measure = limits is not None and len(data) > limits.max_record_bytes
    records = entries = 0
    keys: set[str] = set()

    def counted(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The attribute pairs, their keys counted against the distinct keys limit."""
        if limits is not None:
            keys.update(key for key, _ in pairs)
            if len(keys) > limits.max_keys:
                raise limits.too_many_keys()
        return pairs

    try:
        request = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise IngestError(f"malformed JSON: {error}") from None
    request = _json_object(request, "request")
    batch = LogBatch()
    for r, resource_logs in enumerate(_json_list(_get(request, "resourceLogs", "resource_logs"), "resourceLogs")):
        where = f"resourceLogs[{r}]"
        resource_logs = _json_object(resource_logs, where)
        resource = _json_object(resource_logs.get("resource"), where + ".resource")
        pairs = counted(_json_attributes(resource.get("attributes"), where + ".resource.attributes"))
        resource_size = len(pairs)
        service_name = next((value for key, value in pairs if key == SERVICE_NAME), "")
        resource_map = _attr_map(pairs)
        resource_url = _json_string(_get(resource_logs, "schemaUrl", "schema_url"), where + ".schemaUrl")
        for s, scope_logs in enumerate(_json_list(_get(resource_logs, "scopeLogs", "scope_logs"), where)):
            where_scope = f"{where}.scopeLogs[{s}]"
            scope_logs = _json_object(scope_logs, where_scope)
            scope = _json_object(scope_logs.get("scope"), where_scope + ".scope")
            scope_pairs = counted(_json_attributes(scope.get("attributes"), where_scope + ".scope.attributes"))
            scope_map = _attr_map(scope_pairs)
            scope_url = _json_string(_get(scope_logs, "schemaUrl", "schema_url"), where_scope + ".schemaUrl")
            scope_name = _json_string(scope.get("name"), where_scope + ".scope.name")
            scope_version = _json_string(scope.get("version"), where_scope + ".scope.version")
            log_records = _json_list(_get(scope_logs, "logRecords", "log_records"), where_scope)
            if limits is not None and records + len(log_records) > limits.max_records:
                raise limits.too_many_records()
            for i, record in enumerate(log_records):
                at = f"{where_scope}.logRecords[{i}]"
                record = _json_object(record, at)
                if measure and len(size := orjson.dumps(record)) > limits.max_record_bytes:
                    raise limits.record_too_large(records, len(size))
                records += 1
                body = record.get("body")
                batch.timestamps.append(_timestamp(
                    _json_uint(_get(record, "timeUnixNano", "time_unix_nano"), at + ".timeUnixNano", 64),
                    _json_uint(_get(record, "observedTimeUnixNano", "observed_time_unix_nano"),
                               at + ".observedTimeUnixNano", 64)))
                batch.trace_ids.append(_json_id(_get(record, "traceId", "trace_id"), 16, at + ".traceId"))
                batch.span_ids.append(_json_id(_get(record, "spanId", "span_id"), 8, at + ".spanId"))
                batch.trace_flags.append(_json_uint(record.get("flags"), at + ".flags", 32) & 0xFF)
                batch.severity_texts.append(_json_string(_get(record, "severityText", "severity_text"),
                                                         at + ".severityText"))
                batch.severity_numbers.append(_severity_number(_get(record, "severityNumber", "severity_number"),
                                                               at + ".severityNumber"))
                batch.service_names.append(service_name)
                batch.bodies.append("" if body is None else _json_as_string(body, at + ".body"))
                batch.resource_schema_urls.append(resource_url)
                batch.resource_attributes.append(resource_map)
                batch.scope_schema_urls.append(scope_url)
                batch.scope_names.append(scope_name)
                batch.scope_versions.append(scope_version)
                batch.scope_attributes.append(scope_map)
                record_pairs = counted(_json_attributes(record.get("attributes"), at + ".attributes"))
                entries += resource_size + len(scope_pairs) + len(record_pairs)
                if limits is not None and entries > limits.max_entries(len(data)):
                    raise limits.too_many_entries(len(data))
                batch.log_attributes.append(_attr_map(record_pairs))
                batch.event_names.append(_json_string(_get(record, "eventName", "event_name"), at + ".eventName"))
    return batch


# --------------------------------------------------------------------------------------------------
# Requests


PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def decompress(body: bytes, content_encoding: str | None, max_bytes: int = DEFAULT_MAX_BODY) -> bytes:
    """The request body without its Content-Encoding (gzip, deflate or identity), at most max_bytes
    (LimitError, 413, beyond: inflating stops there, so a zip bomb costs max_bytes)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding in ("gzip", "x-gzip", "deflate"):
        data = _inflate(body, encoding, max_bytes)
    else:
        raise IngestError(f"unsupported Content-Encoding {content_encoding!r} (gzip, deflate or none)")
    if len(data) > max_bytes:
        raise LimitError(f"request larger than {max_bytes} bytes (decompressed; --max-body)")
    return data


_INFLATE_STEP = 4 << 20


def _inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Every member of a gzip body (RFC 1952: a gzip file is a series of members; gzip, Go and the collector
    read them all), or the one zlib stream of deflate. Anything after the last member that is not another
    member, a truncated member or a corrupt one: IngestError, so a body is taken whole or not at all."""
    gzip = encoding != "deflate"
    parts: list[bytes] = []
    size = 0
    rest = body
    member = 0
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
        while not inflater.eof:
            # in steps: zlib's own output buffer for one large call peaks at twice its output (a bomb's 64 MiB
            # limit cost 137 MB); never 0, which would be unbounded (size <= max_bytes here)
            try:
                part = inflater.decompress(rest, min(_INFLATE_STEP, max_bytes + 1 - size))
            except zlib.error as error:
                raise IngestError(f"malformed {encoding} body (member {member}): {error}") from None
            parts.append(part)
            size += len(part)
            if size > max_bytes:
                raise LimitError(f"request larger than {max_bytes} bytes (decompressed; --max-body)")
            rest = inflater.unconsumed_tail
            if not part and not rest and not inflater.eof:
                raise IngestError(f"truncated {encoding} body (member {member})")
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if not gzip or not rest.startswith(b"\x1f\x8b"):
            raise IngestError(f"{len(rest)} bytes of trailing data after the {encoding} body's "
                              f"{'member ' + str(member) if gzip else 'stream'}")
        member += 1


def content_kind(content_type: str | None) -> str:
    """A Content-Type header's media type, lowercased, parameters dropped; both protobuf names as
    ``application/x-protobuf``. Any other type as it is (:func:`media_type` refuses those)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return PROTOBUF if kind == "application/protobuf" else kind


def media_type(content_type: str | None) -> str:
    """``application/x-protobuf`` or ``application/json`` from a Content-Type header; IngestError else."""
    kind = content_kind(content_type)
    if kind in (PROTOBUF, JSON):
        return kind
    raise IngestError(f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}")


def decode_request(body: bytes, content_type: str | None, content_encoding: str | None = None,
                   max_bytes: int = DEFAULT_MAX_BODY, limits: IngestLimits | None = None) -> LogBatch:
    """Decode an OTLP/HTTP logs request body into rows; IngestError (HTTP 400) when it is malformed or names
    what the store refuses (validation.py), LimitError (413) when it exceeds `limits` (default: the defaults,
    at most max_bytes decompressed)."""
    from .validation import check_batch  # (imports this module)

    kind = media_type(content_type)
    limits = limits or IngestLimits(max_body=max_bytes)
    data = decompress(body, content_encoding, limits.max_body)
    batch = decode_protobuf(data, limits) if kind == PROTOBUF else decode_json(data, limits)
    check_batch(batch)
    return batch


# --------------------------------------------------------------------------------------------------
# Writing


def _timestamp_text(ns: int) -> bytes:
    """A DateTime64(9) as the decimal seconds ClickHouse reads exactly (unquoted: quoted digits are dates)."""
    if ns >= 0:
        seconds, fraction = divmod(ns, 1_000_000_000)
        return b"%d.%09d" % (seconds, fraction)
    seconds, fraction = divmod(-ns, 1_000_000_000)
    return b"-%d.%09d" % (seconds, fraction)


def _map_json(value: AttrMap) -> Any:
    if isinstance(value, dict):
        return value
    return orjson.Fragment(b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in value) + b"}")


def _column_json(name: str, values: list[Any]) -> bytes:
    """One column's values as the JSON array JSONColumns reads."""
    if name == "Timestamp":
        return b"[" + b",".join(_timestamp_text(ns) for ns in values) + b"]"
    if name.endswith("Attributes") and not all(type(v) is dict for v in values):
        return orjson.dumps([_map_json(v) for v in values])
    return orjson.dumps(values)


def encode_json_columns(batch: LogBatch, column_names: Sequence[str]) -> bytes:
    """The batch as one JSONColumns document holding the named columns."""
    columns = batch.columns()
    return orjson.dumps({name: orjson.Fragment(_column_json(name, columns[name])) for name in column_names})


class EncodedRows:
    """Rows encoded batch by batch into the columns of one JSONColumns document: the service decodes a request a
    slice at a time (ingest.protobuf_slices) and writes each slice's columns to a temporary file of each column
    (the document is ~0.9x the request: held in memory, it and what the allocator keeps of its pieces were 2x),
    so what the decoding holds is one slice. Written by LogWriter.write_encoded in one insert."""

    def __init__(self, column_names: Sequence[str]) -> None:
        self.column_names = tuple(column_names)
        self.rows = 0
        self._files: dict[str, Any] = {}

    def add(self, batch: LogBatch) -> None:
        if not len(batch):
            return
        if not self._files:
            self._files = {name: tempfile.TemporaryFile() for name in self.column_names}
        columns = batch.columns()
        for name in self.column_names:
            self._files[name].write((b"," if self.rows else b"") + _column_json(name, columns[name])[1:-1])
        self.rows += len(batch)

    def take(self) -> Iterator[bytes]:
        """The document, in pieces of at most 1 MiB; each column's file closed once read."""
        for i, name in enumerate(self.column_names):
            yield (b'{"' if i == 0 else b',"') + name.encode() + b'":['
            with self._files.pop(name) as file:
                file.seek(0)
                while piece := file.read(1 << 20):
                    yield piece
            yield b"]"
        yield b"}"

    def close(self) -> None:
        """Remove the column files (a request refused after some of its slices were encoded)."""
        for file in self._files.values():
            file.close()
        self._files = {}


class LogWriter:
    """Writes decoded batches into ``otel_logs`` of a store, one insert per batch."""

    def __init__(self, client: Any, database: str, table: str = "otel_logs") -> None:
        """Reads the table's columns once (as the exporter does) to know whether EventName is there."""
        self._client = client
        self._table = f"`{database}`.`{table}`"
        described = client.query(f"DESCRIBE TABLE {self._table}").result_rows
        present = {row[0] for row in described}
        missing = [name for name in BASE_COLUMNS if name not in present]
        if missing:
            raise RuntimeError(f"{database}.{table} lacks exporter columns {missing}: run `auditrail migrate`")
        self.columns: tuple[str, ...] = BASE_COLUMNS + tuple(c for c in FEATURE_COLUMNS if c in present)

    def write(self, batch: LogBatch) -> int:
        """Insert every row of the batch in one statement; returns the row count."""
        if not len(batch):
            return 0
        self._client.raw_insert(self._table, list(self.columns), encode_json_columns(batch, self.columns),
                                fmt="JSONColumns")
        return len(batch)

    def write_encoded(self, rows: EncodedRows) -> int:
        """Insert rows encoded for this writer's columns (EncodedRows(writer.columns)) in one statement."""
        if not rows.rows:
            return 0
        assert rows.column_names == self.columns, (rows.column_names, self.columns)
        try:
            self._client.raw_insert(self._table, list(self.columns), rows.take(), fmt="JSONColumns")
        finally:
            rows.close()
        return rows.rows
