"""OTLP/HTTP protobuf ingest on the embedded engine: ClickHouse decodes the request itself.

The rows are the ones ingest.py documents (the contrib clickhouse exporter's, v0.161.0); this module only
changes who computes them. For an ``ExportLogsServiceRequest`` body on a ``chdb://`` store:

1. upb parses it (``FromString``, C): the validation, as in ingest.decode_protobuf (malformed protobuf,
   truncation, invalid UTF-8: IngestError, HTTP 400, nothing written). Then ``ByteSize() == len(body)``:
   only the canonical encoding goes on. A singular field given twice (protobuf: the last one wins, merged for
   messages), an explicit default or an overlong varint makes the body longer than its canonical size; the
   engine's Protobuf reader does not read those as upb does (a repeated ``severity_text`` came out empty),
   so they take the existing path.
2. The few resource and scope values (service name, attribute maps, as ingest.py's own functions compute
   them, every AnyValue kind included) become query parameters, one entry per scope.
3. The body goes to a temporary file and one ``INSERT INTO otel_logs SELECT ... FROM file(..., ProtobufSingle)``
   reads it with the engine's Protobuf input format (schema: proto/otlp_logs_ingest.proto, by its absolute
   path) into nested arrays, ``ARRAY JOIN``s resources, scopes and records, and computes each record's
   columns in SQL: AnyValue as pdata's AsString for strings, ints (decimal), bools, bytes (base64) and empty
   values (the oneof member comes from ``input_format_protobuf_oneof_presence``), attributes sorted by key
   with every pair kept in request order (a sort on (key, position)), ids as lowercase hex. The
   materialized view into audit_events runs on that insert as on any other.
4. What SQL would not format as Go does (a record's double, array or kvlist value: Go's float and JSON
   formatting) and what pdata refuses (a trace or span id of another length) make the statement throw
   (``throwIf``) before its one block reaches the table, and :meth:`FastLogWriter.write` returns None: the
   caller takes the existing path (ingest.decode_protobuf + LogWriter), which decides (rows, or a 400). So
   does any other engine error: the existing path then writes, or fails, as it always did. (Should an
   engine error ever come after the rows were written, the retry duplicates them in otel_logs only;
   audit_events collapses an event id, as for any replayed batch.)

All or nothing: an ``INSERT ... SELECT`` squashes its blocks up to ``min_insert_block_size_rows`` before
writing, and the statement runs with one thread, so a request of at most :data:`MAX_ROWS` records is one
block: a throw anywhere writes nothing (tests/test_store_ingest_fast.py: a bad id in the last of 100,000
records). Larger requests take the existing path.

Measured (benchmarks/storage.py, 200,000 events in 5,000-record requests through ``auditrail serve``, two
senders, a shared 2-core machine; four runs, each with its own baselines): this path 19.0k / 22.2k / 25.3k /
27.2k events/s, the Python decoding path 12.0k / 13.3k / 16.6k / 14.7k, clickhouse-connect inserting the
decoded rows into a plain table 30.0k / 41.9k / 44.3k / 33.5k: 1.6-1.85x the Python path. Per 5,000-record request,
in-process medians: upb parse 12 ms, ByteSize 26 ms, the engine's planning of the statement 45 ms (its size:
the resource/scope expressions as SQL made it ~65-100 ms, hence the parameters), the whole write 246 ms;
the existing path 231 ms of Python decoding plus a 154 ms insert. The engine insert itself (otel_logs with its
skip indexes, plus the view into audit_events) is ~20 us a record, so 100,000/s is out of reach on two cores.
The engine runs outside the GIL: requests insert in parallel, each on its own handle (the existing path
serialises on the service's write lock).

Not taken here (the existing path runs): requests of fewer than :data:`MIN_ROWS` records (the statement's
planning makes this path slower there: the SDK's own batches of 512 go the existing way, a collector's
batches of thousands come here), servers (``http(s)://``: the collector writes there), JSON bodies,
requests of tenant-scoped tokens (the service must see each record's tenant before writing), and
``AUDITRAIL_INGEST_FAST=0``.
"""

from __future__ import annotations

import os
import queue
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from .ingest import SERVICE_NAME, IngestError, _first_as_string
from .ingest import _attributes as _attribute_map

__all__ = ["FAST_ENV", "MAX_ROWS", "MIN_ROWS", "FastLogWriter", "fast_enabled", "insert_sql"]

FAST_ENV = "AUDITRAIL_INGEST_FAST"
MAX_ROWS = 1_000_000  # below min_insert_block_size_rows (1,048,449): one squashed block, all or nothing
# Below this many records the existing path is quicker: this one pays ~30-45 ms a request for the engine to plan
# its statement (measured: 10 records 101 vs 49 ms, 500: 136 vs 106 ms, 1,000: 138 vs 136, 2,000: 187 vs 254).
MIN_ROWS = 1_000
SCHEMA_PATH = Path(__file__).with_name("proto") / "otlp_logs_ingest.proto"
_FAST_ERROR = "auditrail-fast"

# AnyValue's oneof as the engine reports it (input_format_protobuf_oneof_presence): the field number.
_ONEOF = ("Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, "
          "'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7, 'string_value_strindex' = 8)")
# The engine reports a oneof member only when it has a column: every member is here, arrays and kvlists
# with one small field each (their contents are not read: such values take the existing path).
_ANY = (f"Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
        f"array_value Tuple(values Array(Tuple(string_value String))), kvlist_value Tuple(values Array(Tuple(key String))), "
        f"bytes_value String, string_value_strindex Int32, value {_ONEOF})")
_KVS = f"Array(Tuple(key String, value {_ANY}))"
_RECORD = (f"Tuple(time_unix_nano UInt64, observed_time_unix_nano UInt64, severity_number Int32, "
           f"severity_text String, body {_ANY}, attributes {_KVS}, flags UInt32, trace_id String, span_id String, "
           f"event_name String)")
STRUCTURE = (f"resource_logs Array(Tuple(resource Tuple(attributes {_KVS}), schema_url String, "
             f"scope_logs Array(Tuple(scope Tuple(name String, version String, attributes {_KVS}), "
             f"schema_url String, log_records Array({_RECORD})))))")


def fast_enabled() -> bool:
    """False when ``AUDITRAIL_INGEST_FAST`` is 0/false/no/off (the existing path then takes everything)."""
    return os.environ.get(FAST_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _literal(text: str) -> str:
    """A ClickHouse string literal of our own text (paths, the schema, types)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _as_string(value: str) -> str:
    """pdata AsString of the AnyValue tuple `value`; throws for what Go formats differently from SQL."""
    return (f"multiIf({value}.value = 'string_value', {value}.string_value, "
            f"{value}.value = 'int_value', toString({value}.int_value), "
            f"{value}.value = 'bool_value', if({value}.bool_value, 'true', 'false'), "
            f"{value}.value = 'bytes_value', base64Encode({value}.bytes_value), "
            f"{value}.value IN ('double_value', 'array_value', 'kvlist_value'), "
            f"toString(throwIf({value}.value IN ('double_value', 'array_value', 'kvlist_value'), "
            f"'{_FAST_ERROR}: a value the existing path formats')), '')")


def _attributes(key_values: str) -> str:
    """A Map column value: (key, AsString) pairs sorted by key, ties in request order (clickhouse-go's order)."""
    pairs = f"arrayMap(kv -> (kv.key, {_as_string('kv.value')}), {key_values})"
    ordered = f"arraySort((p, i) -> (p.1, i), {pairs}, arrayEnumerate({key_values}))"
    return f"CAST({ordered}, 'Map(LowCardinality(String), String)')"


def _hex_id(raw: str, size: int, name: str) -> str:
    """traceutil.*ToHexOrEmptyString; another length throws (pdata refuses it: the existing path says 400)."""
    return (f"if(length({raw}) = 0 OR {raw} = repeat('\\0', {size}), '', if(length({raw}) = {size}, lower(hex({raw})), "
            f"toString(throwIf(length({raw}) != {size}, '{_FAST_ERROR}: {name} length'))))")


_EXPRESSIONS = {
    "Timestamp": "fromUnixTimestamp64Nano(reinterpretAsInt64(if(r.time_unix_nano = 0, r.observed_time_unix_nano, "
                 "r.time_unix_nano)))",
    "TraceId": _hex_id("r.trace_id", 16, "trace_id"),
    "SpanId": _hex_id("r.span_id", 8, "span_id"),
    "TraceFlags": "toUInt8(bitAnd(r.flags, 255))",
    "SeverityText": "r.severity_text",
    "SeverityNumber": "toUInt8(bitAnd(r.severity_number, 255))",
    "ServiceName": "{service_names:Array(String)}[g]",
    "Body": _as_string("r.body"),
    "ResourceSchemaUrl": "rl.schema_url",
    "ResourceAttributes": "CAST({resource_attributes:Array(Array(Tuple(String, String)))}[g], "
                          "'Map(LowCardinality(String), String)')",
    "ScopeSchemaUrl": "sl.schema_url",
    "ScopeName": "sl.scope.name",
    "ScopeVersion": "sl.scope.version",
    "ScopeAttributes": "CAST({scope_attributes:Array(Array(Tuple(String, String)))}[g], "
                       "'Map(LowCardinality(String), String)')",
    "LogAttributes": _attributes("r.attributes"),
    "EventName": "r.event_name",
}


def insert_sql(table: str, columns: Sequence[str], path: str, schema: str) -> str:
    """The one statement: read the request file at `path`, write the exporter's rows into `table`. `schema` is
    the .proto file's absolute path (a schema given as a string, format_schema_source = 'string', makes the
    engine write a copy under ``__cache__/`` in the process's working directory).

    One flat SELECT with three ARRAY JOINs. The few resource and scope values come as query parameters, one
    per scope (``g``: its position in the request), computed in Python by ingest.py's own functions: as SQL
    they made the statement take ~65 ms to plan (chDB 26.9), more than 5,000 records take to run."""
    names = ", ".join(f"`{name}`" for name in columns)
    values = ",\n  ".join(_EXPRESSIONS[name].replace("[g]", "[{scope_offsets:Array(UInt32)}[ri] + si]")
                           for name in columns)
    return f"""INSERT INTO {table} ({names})
SELECT {values}
FROM file({_literal(path)}, ProtobufSingle, {_literal(STRUCTURE)})
ARRAY JOIN resource_logs AS rl, arrayEnumerate(resource_logs) AS ri
ARRAY JOIN rl.scope_logs AS sl, arrayEnumerate(rl.scope_logs) AS si
ARRAY JOIN sl.log_records AS r
SETTINGS format_schema = {_literal(schema)}, format_schema_message_name = 'ExportLogsServiceRequest',
  input_format_protobuf_oneof_presence = 1, optimize_on_insert = 0, max_threads = 1, max_insert_threads = 1,
  min_insert_block_size_rows = {MAX_ROWS + 48449}, min_insert_block_size_bytes = 0"""


def _quote(text: str) -> str:
    """A string in ClickHouse's quoted text form (query parameter values of Array / Tuple types)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pairs(attributes: Any) -> str:
    items = attributes.items() if isinstance(attributes, dict) else attributes
    return "[" + ",".join(f"({_quote(key)},{_quote(value)})" for key, value in items) + "]"


def scope_parameters(request: ExportLogsServiceRequest) -> tuple[int, dict[str, str]]:
    """(record count, the per-scope query parameters): service name, resource and scope attribute maps as
    the existing path computes them (ingest._first_as_string, ingest._attributes: pdata AsString, sorted)."""
    records = 0
    offsets: list[str] = []
    services: list[str] = []
    resource_maps: list[str] = []
    scope_maps: list[str] = []
    for resource_logs in request.resource_logs:
        offsets.append(str(len(services)))
        attributes = resource_logs.resource.attributes
        service = _quote(_first_as_string(attributes, SERVICE_NAME))
        resource_map = _pairs(_attribute_map(attributes))
        for scope_logs in resource_logs.scope_logs:
            records += len(scope_logs.log_records)
            services.append(service)
            resource_maps.append(resource_map)
            scope_maps.append(_pairs(_attribute_map(scope_logs.scope.attributes)))
    return records, {"scope_offsets": "[" + ",".join(offsets) + "]", "service_names": "[" + ",".join(services) + "]",
                     "resource_attributes": "[" + ",".join(resource_maps) + "]",
                     "scope_attributes": "[" + ",".join(scope_maps) + "]"}


class FastLogWriter:
    """Inserts protobuf requests into ``otel_logs`` of an embedded store, decoded by the engine.

    Holds `handles` chDB connections of its own on the store's engine (one process, one directory: the
    same engine as the store's client), so that many requests insert at once, each on its own handle.
    """

    def __init__(self, path: str, database: str, columns: Sequence[str], table: str = "otel_logs",
                 handles: int = 2, spool: str | None = None, min_rows: int = MIN_ROWS) -> None:
        import chdb

        self.min_rows = min_rows

        self._schema = str(SCHEMA_PATH.resolve(strict=True))
        self._table = f"`{database}`.`{table}`"
        self._columns = tuple(columns)
        self._spool = spool or (Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) and "/dev/shm") or None
        # clickhouse-connect's chdb backend opens the engine with the real path; chDB compares paths literally.
        self._connections = [chdb.connect(os.path.realpath(path)) for _ in range(max(1, handles))]
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for connection in self._connections:
            self._idle.put(connection)

    @classmethod
    def for_store(cls, store: Any, columns: Sequence[str], table: str = "otel_logs", handles: int = 2,
                  min_rows: int = MIN_ROWS) -> FastLogWriter | None:
        """A writer for an embedded store (``chdb://``), None for servers or when switched off."""
        if not getattr(store, "embedded", False) or not fast_enabled():
            return None
        return cls(urlparse(store.url).path, store.database, columns, table=table, handles=handles,
                   min_rows=min_rows)

    def write(self, data: bytes) -> int | None:
        """Insert the rows of protobuf request `data` (already decompressed); the row count, or None when this
        path does not take the request (nothing was written: use ingest.decode_protobuf + LogWriter).
        IngestError (nothing written) when it is not a protobuf ExportLogsServiceRequest."""
        try:
            request = ExportLogsServiceRequest.FromString(data)
        except DecodeError as error:
            raise IngestError(f"malformed protobuf ExportLogsServiceRequest: {error}") from None
        if request.ByteSize() != len(data):
            # Not the canonical encoding: a field given twice (protobuf merges: the last one wins, where the
            # engine reads otherwise), an explicit default, an unknown field... The existing path decides.
            return None
        rows, parameters = scope_parameters(request)
        if rows == 0:
            return 0
        if rows > MAX_ROWS or rows < self.min_rows:
            return None
        descriptor, name = tempfile.mkstemp(prefix="auditrail-otlp-", suffix=".pb", dir=self._spool)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            connection = self._idle.get()
            try:
                connection.query(insert_sql(self._table, self._columns, name, self._schema), params=parameters)
            except Exception:  # a throwIf of ours, or anything the engine reads otherwise: the existing path decides
                return None
            finally:
                self._idle.put(connection)
        finally:
            os.unlink(name)
        return rows

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.close()
            except Exception:  # noqa: S110 - closing at shutdown; the engine goes with the process
                pass
        self._connections = []
