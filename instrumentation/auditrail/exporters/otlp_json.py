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
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

__all__ = [
    "OTLPJsonLinesExporter",
    "ReadErrorHandler",
    "decode_any_value",
    "decode_attributes",
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
        if self._shutdown:
            _logger.warning("OTLPJsonLinesExporter for %s is shut down; dropping %d records", self._path, len(batch))
            return LogRecordExportResult.FAILURE
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            line = (request_to_collector_json(encode_logs(batch)) + "\n").encode("utf-8")
        except Exception:  # noqa: BLE001 - an exporter must not raise into the SDK or the app
            _logger.exception("cannot encode %d log records as OTLP/JSON", len(batch))
            return LogRecordExportResult.FAILURE
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
                return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

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
