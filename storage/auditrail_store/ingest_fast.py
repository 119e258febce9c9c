"""OTLP/HTTP protobuf ingest on the embedded engine: the native core, or ClickHouse itself, decodes the request.

The rows are the ones ingest.py documents (the contrib clickhouse exporter's, v0.161.0); this module only
changes who computes them.

With the native core (``native/``, Rust, built by ``make install`` when cargo is there) no SQL decodes: its
own zero-copy protobuf reader (upb's rules: last wins, messages merged, unknown fields skipped, UTF-8
checked; what it does not read raises and upb decides; the request limits counted as it reads) turns the
request into one ClickHouse Native block of the 16 columns, kept in the core's buffers (a NativeBlock) until
the group's file is written from them, and the group insert is ``INSERT INTO otel_logs SELECT * FROM file(..., Native)``
(:func:`native_insert_sql`). CPU per record of 15 attributes (15,000-record requests): 1.9-2.8 us to decode
and encode (prost: 10.6-12.4), the engine's insert with the view 9.5-13 us (merges stopped, compact parts:
db.ENGINE_CONFIG), background merges 5-14 us more; through the service 24-35 us, 47k events/s median
(docs/storage.md, "The native core" and the ceiling). Without the native core, the engine decodes an
``ExportLogsServiceRequest`` body on a ``chdb://`` store:

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

Group commit: requests that arrive while an insert runs are queued, and the next insert takes all of them
(up to :data:`GROUP_ROWS` records and :data:`GROUP_BYTES` of bodies) as one statement over their concatenated
bodies (concatenated protobuf messages are one message: every request's ``resource_logs`` in order; the scope
parameters are joined to match). Each caller is answered once the insert holding its rows succeeded. A second
handle starts an insert beside a running one only for a full group of backlog: small parts cost more in
merges than they save. With no insert running, a request starts one at once unless requests announced beside
it (:meth:`FastLogWriter.arrive`: the service announces one while its body arrives) are still on their way:
it waits for them, :data:`GROUP_WAIT` at most, so a burst's first group is not a group of one.

The byte bound (benchmarks/storage.py --only ingest: 200,000 records in 5,000-record requests of 4.3 MB,
8 senders, through the service; medians, the shared 2-core machine busy, so read the CPU figure): without it
(groups up to 50,000 records, ~0.6 GB an insert) 20.9k events/s and 54 CPU us an event (4 runs); 16 MiB
(3 requests a group) 20.4k/s, 62 us (3 runs); 12 MiB (2 a group) 17.9k/s, 67 us (3 runs); 8 MiB (no
grouping left for requests this size) 13.0k/s, 93 us (2 runs). Smaller groups mean more parts to merge. The
service's peak RSS in that benchmark was 1.1-1.3 GB in every variant (and ~0.95 GB on the Python path): most
of it is not the group insert's (the engine's merges and caches, the requests in flight).

All or nothing: an ``INSERT ... SELECT`` squashes its blocks up to ``min_insert_block_size_rows`` before
writing, and the statement runs with one thread, so a statement of at most :data:`MAX_ROWS` records is one
block: a throw anywhere writes nothing (tests/test_store_ingest_fast.py: a bad id in the last of 100,000
records). A group statement that fails is retried request by request, so the one request the existing path
must decide does not send the others there. Requests larger than MAX_ROWS take the existing path.

Where the time goes (chDB 26.9, 15-attribute audit records, in-process, best of rounds on the shared 2-core
machine; engine CPU per record): decoding the body in the statement 12.5 us (the Protobuf reader itself ~6:
the attributes' nested arrays; their AsString + sort into the Map ~5), writing otel_logs 2.8 us (6.4 in
5,000-row inserts), the view's SELECT 2.6 us, writing audit_events 1.9 us (4.4 in 5,000-row inserts);
upb ``FromString`` 2.7 us and ``ByteSize`` 4.5 us in Python; the statement's planning ~45 ms whatever its
size. Then merges: every insert is a part in otel_logs and in audit_events that background merges rewrite,
25-30 us a record more when inserts are 5,000 rows. Measured with the engine's own formats for comparison:
JSONColumns parses at 7.4-12 us a record (but Python must build it: ~40 us), so the engine decoding the
protobuf stays the cheaper whole. Group commit (8 threads sending 5,000-record requests, 400,000 records,
one run, load ~7): 8.7k events/s and 98 CPU us an event without it, 17.1k/s and 55 us with it.
benchmarks/storage.py measures the service end to end beside its baseline.

Not taken here (the existing path runs): requests of fewer than :data:`MIN_ROWS` records (the statement's
planning makes this path slower there: the SDK's own batches of 512 go the existing way, a collector's
batches of thousands come here), servers (``http(s)://``: the collector writes there), JSON bodies,
requests of tenant-scoped tokens (the service must see each record's tenant before writing), and
``AUDITRAIL_INGEST_FAST=0``.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

try:  # the native core (native/, a Rust extension): decodes a request into one Native block of the rows
    import auditrail_native as _native
except ImportError:  # not built: the engine decodes the protobuf (insert_sql)
    _native = None

from .db import engine_connection_string
from .ingest import SERVICE_NAME, IngestError, _first_as_string
from .ingest import _attributes as _attribute_map
from .ingest_limits import IngestLimits, check_protobuf
from .validation import REFUSED_ROW

__all__ = ["FAST_ENV", "HANDLES", "Arrival", "GROUP_BYTES", "GROUP_ROWS", "GROUP_WAIT", "MAX_ROWS", "MIN_ROWS", "FastLogWriter", "fast_enabled", "insert_sql"]

FAST_ENV = "AUDITRAIL_INGEST_FAST"
SPOOL_ENV = "AUDITRAIL_INGEST_SPOOL"  # where request files go (default /dev/shm)
logger = logging.getLogger("auditrail.store")
MAX_ROWS = 1_000_000  # below min_insert_block_size_rows (1,048,449): one squashed block, all or nothing
# Below this many records the existing path is quicker: this one pays ~30-45 ms a request for the engine to plan
# its statement (measured: 10 records 101 vs 49 ms, 500: 136 vs 106 ms, 1,000: 138 vs 136, 2,000: 187 vs 254).
MIN_ROWS = 1_000
# Records of one group insert (concurrent requests coalesced): large enough that the statement's fixed price
# and the merges of its parts are small per record, small enough to bound latency. Memory is GROUP_BYTES' job.
GROUP_ROWS = 50_000
# Request bytes of one group insert (at least one request): what bounds memory. An insert's peak is ~14x its
# bodies (the body, upb's copy, the engine's nested arrays; measured in-process on a fresh engine, records of
# 15 attributes, ~850 B each: 4.3 MB of bodies +69 MB RSS, 8.5 MB +126, 12.8 MB +189, 17.1 MB +233,
# 42.7 MB (50,000 records, the old bound) +572). 16 MiB: ~+190-235 MB an insert, two at most at once.
GROUP_BYTES = 16 << 20
# Engine handles of a writer: how many group inserts run at once (a second one starts only for a full group).
HANDLES = 2
# How long a request that would start an insert alone waits for the requests arriving beside it (being read or
# decoded: a burst's first requests come together): they join its group, as they would have joined the next
# one, instead of an insert of one request and a small part more to merge. Reading and decoding a
# 5,000-record request (4 MB) takes a few ms.
GROUP_WAIT = 0.05
SCHEMA_PATH = Path(__file__).with_name("proto") / "otlp_logs_ingest.proto"
_FAST_ERROR = "auditrail-fast"
# A row validation.py refuses (a time the store cannot hold, a tenant id outside the syntax) makes the statement
# throw before its block is written: the existing path then answers 400 naming the record.
_REFUSE = f"WHERE NOT throwIf({REFUSED_ROW}, '{_FAST_ERROR}: a record validation.py refuses')"

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
    values = ",\n  ".join(_EXPRESSIONS[name].replace("[g]", "[{scope_offsets:Array(UInt32)}[ri] + si]") + f" AS `{name}`"
                           for name in columns)
    return f"""INSERT INTO {table} ({names})
SELECT {values}
FROM file({_literal(path)}, ProtobufSingle, {_literal(STRUCTURE)})
ARRAY JOIN resource_logs AS rl, arrayEnumerate(resource_logs) AS ri
ARRAY JOIN rl.scope_logs AS sl, arrayEnumerate(rl.scope_logs) AS si
ARRAY JOIN sl.log_records AS r
{_REFUSE}
SETTINGS format_schema = {_literal(schema)}, format_schema_message_name = 'ExportLogsServiceRequest',
  input_format_protobuf_oneof_presence = 1, optimize_on_insert = 0, max_threads = 1, max_insert_threads = 1,
  min_insert_block_size_rows = {MAX_ROWS + 48449}, min_insert_block_size_bytes = 0"""


def _parse(data: bytes) -> ExportLogsServiceRequest:
    """upb's reading of a request; IngestError (HTTP 400) when it is not one."""
    try:
        return ExportLogsServiceRequest.FromString(data)
    except DecodeError as error:
        raise IngestError(f"malformed protobuf ExportLogsServiceRequest: {error}") from None


def native_insert_sql(table: str, columns: Sequence[str], path: str) -> str:
    """The insert of a file of Native blocks (the native core's), all or nothing as insert_sql's."""
    names = ", ".join(f"`{name}`" for name in columns)
    return f"""INSERT INTO {table} ({names}) SELECT * FROM file({_literal(path)}, Native) {_REFUSE}
SETTINGS optimize_on_insert = 0, max_threads = 1, max_insert_threads = 1,
  min_insert_block_size_rows = {MAX_ROWS + 48449}, min_insert_block_size_bytes = 0"""


def _quote(text: str) -> str:
    """A string in ClickHouse's quoted text form (query parameter values of Array / Tuple types)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pairs(attributes: Any) -> str:
    items = attributes.items() if isinstance(attributes, dict) else attributes
    return "[" + ",".join(f"({_quote(key)},{_quote(value)})" for key, value in items) + "]"


@dataclass(frozen=True, slots=True)
class ScopeValues:
    """A request's resource and scope values, one entry per scope (quoted texts of query parameter arrays),
    and per ResourceLogs the position of its first scope: what the statement indexes with ``g``."""

    first_scopes: list[int]
    service_names: list[str]
    resource_maps: list[str]
    scope_maps: list[str]


def scope_values(request: ExportLogsServiceRequest) -> tuple[int, ScopeValues]:
    """(record count, the per-scope values): service name, resource and scope attribute maps as the existing
    path computes them (ingest._first_as_string, ingest._attributes: pdata AsString, sorted)."""
    records = 0
    values = ScopeValues([], [], [], [])
    for resource_logs in request.resource_logs:
        values.first_scopes.append(len(values.service_names))
        attributes = resource_logs.resource.attributes
        service = _quote(_first_as_string(attributes, SERVICE_NAME))
        resource_map = _pairs(_attribute_map(attributes))
        for scope_logs in resource_logs.scope_logs:
            records += len(scope_logs.log_records)
            values.service_names.append(service)
            values.resource_maps.append(resource_map)
            values.scope_maps.append(_pairs(_attribute_map(scope_logs.scope.attributes)))
    return records, values


def scope_parameters(requests: Sequence[ScopeValues]) -> dict[str, str]:
    """The statement's query parameters for the concatenation of these requests' bodies, in order (protobuf:
    concatenated messages are one message whose repeated ``resource_logs`` hold every request's)."""
    offsets: list[str] = []
    services: list[str] = []
    resource_maps: list[str] = []
    scope_maps: list[str] = []
    for values in requests:
        base = len(services)
        offsets += [str(base + first) for first in values.first_scopes]
        services += values.service_names
        resource_maps += values.resource_maps
        scope_maps += values.scope_maps
    return {"scope_offsets": "[" + ",".join(offsets) + "]", "service_names": "[" + ",".join(services) + "]",
            "resource_attributes": "[" + ",".join(resource_maps) + "]",
            "scope_attributes": "[" + ",".join(scope_maps) + "]"}


@dataclass(eq=False, slots=True)
class Arrival:
    """A request announced to a FastLogWriter (:meth:`FastLogWriter.arrive`) until it is queued or leaves."""

    left: bool = False


@dataclass(eq=False, slots=True)
class _Pending:
    """One request waiting for the group insert that holds its rows."""

    data: Any  # the request (bytes), or (native) its Native block (auditrail_native.NativeBlock); len() in bytes
    rows: int
    scopes: ScopeValues | None  # None: a Native block
    taken: bool = False  # in a group being inserted
    done: bool = False
    written: int | None = None


class FastLogWriter:
    """Inserts protobuf requests into ``otel_logs`` of an embedded store, decoded by the engine.

    Group commit: requests that arrive while an insert runs wait in a queue, and the next free handle takes
    all of them (up to `group_rows` records) as one statement over their concatenated bodies. Each engine
    statement has a fixed price (its planning, ~45 ms; a part in otel_logs and one in audit_events), so
    concurrent requests (a collector's exporter queue sends with several consumers) share it. Every caller
    returns only once the insert holding its rows succeeded. A group insert that fails wrote nothing (one
    block, see the module notes); its requests are then tried one by one, so one request the existing path
    must decide never sends the others there.

    Holds `handles` chDB connections of its own on the store's engine (one process, one directory: the
    same engine as the store's client): that many group inserts run at once, outside the GIL.
    """

    def __init__(self, path: str, database: str, columns: Sequence[str], table: str = "otel_logs",
                 handles: int = HANDLES, spool: str | None = None, min_rows: int = MIN_ROWS,
                 group_rows: int = GROUP_ROWS, group_bytes: int = GROUP_BYTES, native: bool = True,
                 group_wait: float = GROUP_WAIT) -> None:
        import chdb

        self.min_rows = min_rows
        self.group_rows = min(group_rows, MAX_ROWS)
        self.group_bytes = group_bytes
        self._schema = str(SCHEMA_PATH.resolve(strict=True))
        self._table = f"`{database}`.`{table}`"
        self._columns = tuple(columns)
        # The native core when built (native=False: the engine decodes, as where it is not).
        self._native = _native if native and _native is not None and set(columns) == set(_native.COLUMNS) else None
        self._spool = RequestSpool(spool or os.environ.get(SPOOL_ENV) or _default_spool())
        # the store's engine (chDB: one per process), with its configuration should this be the first handle
        self._connections = [chdb.connect(engine_connection_string(path)) for _ in range(max(1, handles))]
        self._idle = list(self._connections)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._queued_bytes = 0
        self._arriving = 0  # requests announced (arrive()) and not yet queued, declined or gone
        self._group_files: dict[int, tuple[int, str]] = {}  # a handle's (by id) file for its native inserts
        self.group_wait = group_wait
        self._ready = threading.Condition()

    @classmethod
    def for_store(cls, store: Any, columns: Sequence[str], table: str = "otel_logs", handles: int = HANDLES,
                  min_rows: int = MIN_ROWS, group_rows: int = GROUP_ROWS,
                 group_bytes: int = GROUP_BYTES, native: bool = True) -> FastLogWriter | None:
        """A writer for an embedded store (``chdb://``), None for servers or when switched off."""
        if not getattr(store, "embedded", False) or not fast_enabled():
            return None
        return cls(urlparse(store.url).path, store.database, columns, table=table, handles=handles,
                   min_rows=min_rows, group_rows=group_rows, group_bytes=group_bytes, native=native)

    def write(self, data: bytes, limits: IngestLimits | None = None, size: int | None = None,
              arrival: Arrival | None = None) -> int | None:
        """Insert the rows of protobuf request `data` (already decompressed); the row count once they are
        written, or None when this path does not take the request (nothing of it was written: use
        ingest.decode_protobuf + LogWriter). IngestError (nothing written) when it is not a protobuf
        ExportLogsServiceRequest. With `limits`, LimitError (nothing written) past one of them, found before
        anything decodes the request beyond it (the native encoder counts as it reads; else the scan first).

        `size`: the size of the request `data` was transcoded from (OTLP/JSON), which the budgets follow.
        `arrival`: the request's :meth:`arrive` (taken when its body began to arrive), so a request that would
        start an insert alone waits a little for it (GROUP_WAIT)."""
        try:
            return self._write(data, limits, size, arrival)
        finally:
            self.leave(arrival)

    def arrive(self) -> Arrival:
        """Announce a request on its way to write() (its body being read); :meth:`leave` it if it never gets there."""
        with self._ready:
            self._arriving += 1
        return Arrival()

    def leave(self, arrival: Arrival | None) -> None:
        """The announced request is queued, declined or gone: no group waits for it any more (idempotent)."""
        if arrival is None or arrival.left:
            return
        with self._ready:
            if not arrival.left:
                arrival.left = True
                self._arriving -= 1
                self._ready.notify_all()  # a request waiting for this one to join its group looks again

    def _write(self, data: bytes, limits: IngestLimits | None, size: int | None,
               arrival: Arrival | None) -> int | None:
        if self._native is not None:
            return self._write_native(data, limits, size, arrival)
        if limits is not None:
            check_protobuf(data, limits, size=size)
        request = _parse(data)
        if request.ByteSize() != len(data):
            # Not the canonical encoding: a field given twice (protobuf merges: the last one wins, where the
            # engine reads otherwise), an explicit default, an unknown field... The existing path decides.
            return None
        rows, scopes = scope_values(request)
        del request  # the parsed copy (~1.8x the body) is not needed while the request waits for its group
        return self._take(_Pending(data, rows, scopes), arrival)

    def _write_native(self, data: bytes, limits: IngestLimits | None, size: int | None = None,
                      arrival: Arrival | None = None) -> int | None:
        """write() through the native core: its wire reader decodes the request (upb's rules: a field given
        twice is read as upb reads it, so no canonical-encoding check) into one Native block. With `limits` it
        stops at the first one passed (counted as the scan counts), and the scan then names it: one pass over
        the wire for the requests within them (the scan cost 0.38 us a record beside the encoder's 1.0)."""
        size = len(data) if size is None else size
        bounds = () if limits is None else (limits.max_records, limits.max_record_bytes,
                                            limits.max_messages(size), limits.max_keys, limits.max_entries(size))
        try:  # the block stays in the core's buffers (a NativeBlock) until its group's file is written
            encoded = self._native.otlp_logs_block(data, *bounds)
        except ValueError:  # the native reader does not take it; upb decides whether it is malformed (else the
            # Python path, which reads upb's, writes it), after the limits: upb's memory is what they bound
            if limits is not None:
                check_protobuf(data, limits, size=size)
            _parse(data)
            return None
        if encoded == "limit":
            check_protobuf(data, limits, size=size)  # LimitError naming the limit; else the scan found the body unreadable
            return None                   # before it (upb refuses it on the existing path)
        if encoded is None:  # a trace or span id of another length (pdata refuses it): the Python path says 400
            return None
        return self._take(_Pending(encoded, encoded.rows, None), arrival)

    def _take(self, pending: _Pending, arrival: Arrival | None = None) -> int | None:
        """0 for an empty request, None outside this path's sizes (the existing path takes it), else commit it."""
        if pending.rows == 0:
            return 0
        if pending.rows > MAX_ROWS or pending.rows < self.min_rows:
            return None
        return self._commit(pending, arrival)

    def _commit(self, pending: _Pending, arrival: Arrival | None = None) -> int | None:
        """Queue `pending`; wait until a group holding it is done, or take a free handle and insert a group."""
        with self._ready:
            self._queue.append(pending)
            self._queued_rows += pending.rows
            self._queued_bytes += len(pending.data)
        self.leave(arrival)  # queued (and it notifies)
        return self._wait_and_insert(pending)

    def _wait_and_insert(self, pending: _Pending) -> int | None:
        """_commit's loop: wait until a group holding `pending` is done, or start one."""
        deadline = time.monotonic() + self.group_wait
        while True:
            with self._ready:
                while not pending.done and (pending.taken or not self._may_start(deadline)):
                    now = time.monotonic()
                    self._ready.wait(deadline - now if now < deadline else None)
                if pending.done:
                    return pending.written
                connection = self._idle.pop()
                group = self._take_group()
            try:
                self._insert_group(connection, group)
            finally:
                with self._ready:
                    for item in group:
                        item.done = True  # an unexpected error above: None, the existing path decides
                    self._idle.append(connection)
                    self._ready.notify_all()

    def _may_start(self, deadline: float) -> bool:
        """A free handle, and either a full group waiting or no insert running (under the lock). Starting a
        second insert beside a running one for a few requests would make small parts: the next group is
        larger for waiting, and every part costs merges later (measured: 55 vs 75 CPU us an event). A group is
        full when one more request like the last queued would not fit in it (group_rows, group_bytes): it can
        only wait then, so it starts on the free handle. (Full was once "the queue holds group_bytes or more",
        which a queue of whole groups never reaches: 4 MB requests in a 16 MiB group made a queue of four
        that never started beside a running insert, and 8 senders always queued four; the second handle sat
        idle and the inserts ran one at a time: benchmarks/storage.py, the service 116k-128k events/s, 145k-170k
        with this rule, same runs alternated.) With no insert running, the requests arriving beside this one are waited
        for until `deadline` (GROUP_WAIT after it was queued), so the first group of a burst is not a group of
        one."""
        if not self._idle:
            return False
        if self._queue:
            last = self._queue[-1]
            if (self._queued_rows + last.rows > self.group_rows
                    or self._queued_bytes + len(last.data) > self.group_bytes):
                return True
        return len(self._idle) == len(self._connections) and (self._arriving == 0 or time.monotonic() >= deadline)

    def _take_group(self) -> list[_Pending]:
        """The queue's oldest requests, up to group_rows records and group_bytes of bodies (at least one
        request). Under the lock."""
        group = [self._queue.popleft()]
        rows, size = group[0].rows, len(group[0].data)
        while (self._queue and rows + self._queue[0].rows <= self.group_rows
               and size + len(self._queue[0].data) <= self.group_bytes):
            rows += self._queue[0].rows
            size += len(self._queue[0].data)
            group.append(self._queue.popleft())
        for item in group:
            item.taken = True
        self._queued_rows -= rows
        self._queued_bytes -= size
        return group

    def _insert_group(self, connection: Any, group: list[_Pending]) -> None:
        """Insert the group as one statement; if that fails (nothing written), each request alone."""
        if self._insert(connection, group):
            for item in group:
                item.written = item.rows
        elif len(group) > 1:
            for item in group:
                item.written = item.rows if self._insert(connection, [item]) else None

    def _insert(self, connection: Any, group: list[_Pending]) -> bool:
        """One INSERT ... SELECT over the group's concatenated bodies; False when the engine refused it."""
        if group[0].scopes is None:
            return self._insert_native(connection, group)
        descriptor, name = self._spool.file()
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.writelines(item.data for item in group)
            try:
                connection.query(insert_sql(self._table, self._columns, name, self._schema),
                                 params=scope_parameters([item.scopes for item in group]))
            except Exception:  # a throwIf of ours, or anything the engine reads otherwise: the existing path decides
                return False
        finally:
            os.unlink(name)
        return True

    def _insert_native(self, connection: Any, group: list[_Pending]) -> bool:
        """_insert of Native blocks, written from the core's buffers one after the other into the handle's own
        file, rewritten in place for each of its inserts: a new file a group cost its pages anew (allocated,
        charged, zeroed, freed at the unlink: 0.157 against 0.070 us a record written, 16 MB groups), and the
        write is on the group's path. So each handle keeps its last group's bytes (at most GROUP_BYTES) in the
        spool until the next insert or close()."""
        descriptor, name = self._group_file(connection)
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            for item in group:
                item.data.write_to(descriptor)
            os.ftruncate(descriptor, os.lseek(descriptor, 0, os.SEEK_CUR))  # what an earlier, longer group left
        except OSError:
            os.ftruncate(descriptor, 0)  # a full /dev/shm: give back what this write took
            raise
        try:
            connection.query(native_insert_sql(self._table, self._native.COLUMNS, name))
        except Exception:  # a throwIf of ours, or anything the engine reads otherwise: the existing path decides
            return False
        return True

    def _group_file(self, connection: Any) -> tuple[int, str]:
        """(descriptor, path) of the file `connection`'s native inserts read (one thread uses a handle at once)."""
        held = self._group_files.get(id(connection))
        if held is None:
            held = self._group_files[id(connection)] = self._spool.file()
        return held

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.close()
            except Exception:  # noqa: S110 - closing at shutdown; the engine goes with the process
                pass
        self._connections = []
        for descriptor, _ in self._group_files.values():
            os.close(descriptor)
        self._group_files.clear()
        self._spool.close()  # removes the files


def _default_spool() -> str:
    """/dev/shm when there is one to write to (the files never touch a disk), else the temporary directory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class RequestSpool:
    """The directory of this writer's request files: ``auditrail-ingest-*/`` under `base`, locked (flock) for
    the process's life, removed on close.

    A process killed (kill -9, OOM) leaves its directory, up to a group's bytes; the next writer to start on
    the host removes every such directory whose lock it can take: its owner is dead (the kernel drops a flock
    with its process), whatever its pid became since, and a live replica's directory is never touched. Files
    of the earlier layout (``auditrail-otlp-*.pb`` directly in `base`, no owner to ask) are removed once older
    than :data:`STALE_SECONDS`, far longer than an insert takes."""

    PREFIX = "auditrail-ingest-"
    STALE_SECONDS = 600.0

    def __init__(self, base: str) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.removed = self._remove_dead()
        # Locked before it takes its name: a directory of that name without a live lock is a dead one's.
        fresh = tempfile.mkdtemp(prefix="." + self.PREFIX, dir=self.base)
        self._lock = os.open(fresh, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = self.base / Path(fresh).name[1:]
        os.rename(fresh, self.path)  # the lock is the inode's: it follows

    def file(self) -> tuple[int, str]:
        """(descriptor, path) of a new request file."""
        return tempfile.mkstemp(prefix="otlp-", suffix=".pb", dir=self.path)

    def close(self) -> None:
        if self._lock < 0:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = -1

    def _remove_dead(self) -> int:
        """Remove what dead writers left here; the number of files removed."""
        removed = 0
        now = time.time()
        for entry in self.base.glob(self.PREFIX + "*"):
            try:
                descriptor = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            else:
                removed += sum(1 for _ in entry.iterdir())
                shutil.rmtree(entry, ignore_errors=True)
            finally:
                os.close(descriptor)
        # the earlier layout's files, and directories of writers killed between their creation and naming
        for legacy in [*self.base.glob("auditrail-otlp-*.pb"), *self.base.glob("." + self.PREFIX + "*")]:
            try:
                if now - legacy.stat().st_mtime > self.STALE_SECONDS:
                    shutil.rmtree(legacy) if legacy.is_dir() else legacy.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            logger.info("removed %d request file(s) a dead ingest process left in %s", removed, self.base)
        return removed
