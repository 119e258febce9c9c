"""Per-request ingest limits, checked before any decoding (HTTP 413 naming the limit, nothing written).

The byte limit (``--max-body``, 64 MiB decompressed) does not bound what a request costs: an empty LogRecord
is 2 bytes on the wire and ~140 bytes in upb, ~360 in the Python rows, so 8,000,000 of them (15 KiB of gzip)
took the service to 4.2 GB. What memory follows is the number of messages, so three limits:

* records per request, ``--max-records`` (``AUDITRAIL_INGEST_MAX_RECORDS``, default 100,000);
* bytes per record, ``--max-record-bytes`` (``AUDITRAIL_INGEST_MAX_RECORD_BYTES``, default 1 MiB): a
  LogRecord's encoded size (protobuf), its compact JSON text (OTLP/JSON);
* protobuf messages (resource and scope entries, records, attributes, values) per request: at most one per
  :data:`BYTES_PER_MESSAGE` bytes of the decompressed request, or :data:`MESSAGE_FLOOR` for small ones. Real
  audit records are ~27 bytes a message (an 850-byte record of 15 attributes is 31 messages); a body of empty
  attributes or values, 2 bytes each, is what this refuses. OTLP/JSON: objects and arrays, counted as the
  ``{`` and ``[`` bytes of the body (an upper bound: braces inside strings count too; real requests have one
  per ~40 bytes);
* distinct attribute keys per request (resource, scope and record attributes together), ``--max-attribute-keys``
  (``AUDITRAIL_INGEST_MAX_ATTRIBUTE_KEYS``, default 10,000). The three attribute columns are
  ``Map(LowCardinality(String), String)``: the engine's insert builds a dictionary of every distinct key,
  ~100 bytes each whatever its size on the wire (3.5 million distinct 10-character keys in 63 MiB: +360 MB of
  the insert's peak, against +45 MB for the same entries under 50 keys). Real requests hold tens;
* attributes the rows hold (map entries): every otel_logs row holds its resource's and its scope's attributes
  besides its own, so at most one per :data:`BYTES_PER_ENTRY` bytes of the request, or :data:`ENTRY_FLOOR`: a
  resource of 1,000 attributes over 20,000 one-line records (257 KB) was 20 million entries, a 221 MB Native
  block. Real audit records are ~28 bytes an entry with a typical resource; small app-log records under a large
  (k8s) resource come nearest, ~8-10.

The protobuf scan is the native core's (``otlp_logs_scan``: it allocates only the set of keys, bounded by
their limit, and stops at the first limit exceeded); :func:`scan_protobuf_python` is its twin where the core
is not built. Both run before upb, the native encoder or the Python decoder see the body, and before the
tenant check that needs the decoded records. OTLP/JSON is read by the native core as a stream into protobuf
(ingest_json.py: records counted and measured as they are read, the body's objects and arrays counted first),
then checked as protobuf with the budgets of the JSON body's size; without the core, decode_json counts them. With
these and the Python path's decoding in slices (ingest.protobuf_slices) a request's peak memory is a small
multiple of its decompressed size (docs/storage.md, "Peak memory of the worst requests"). The native
encoder (ingest_fast.py, an all-tenant token's fast path) counts the same limits as it reads and stops at the
first passed, so the requests it takes are read once; the scan then names what it stopped at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

try:
    import auditrail_native as _native
except ImportError:  # not built: the Python twin scans
    _native = None

__all__ = ["BYTES_PER_ENTRY", "BYTES_PER_MESSAGE", "ENTRY_FLOOR", "MESSAGE_FLOOR", "IngestError", "IngestLimits", "LimitError", "Scanned", "check_json",
           "check_protobuf",
           "scan_protobuf_python"]

BYTES_PER_MESSAGE = 8
MESSAGE_FLOOR = 250_000
BYTES_PER_ENTRY = 8
ENTRY_FLOOR = 250_000
DEFAULT_MAX_BODY = 64 << 20  # decompressed request size accepted by the service
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_RECORD_BYTES = 1 << 20
MAX_RECORDS_ENV = "AUDITRAIL_INGEST_MAX_RECORDS"
MAX_RECORD_BYTES_ENV = "AUDITRAIL_INGEST_MAX_RECORD_BYTES"
MAX_BODY_ENV = "AUDITRAIL_INGEST_MAX_BODY"
DEFAULT_MAX_KEYS = 10_000
MAX_KEYS_ENV = "AUDITRAIL_INGEST_MAX_ATTRIBUTE_KEYS"


class IngestError(ValueError):
    """A request that cannot be ingested (malformed, unsupported): HTTP 400, nothing written."""


class LimitError(IngestError):
    """A request over one of the limits: HTTP 413, nothing written; the message names the limit."""


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """What one ingest request may hold."""

    max_body: int = DEFAULT_MAX_BODY
    max_records: int = DEFAULT_MAX_RECORDS
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_keys: int = DEFAULT_MAX_KEYS

    @classmethod
    def from_env(cls, max_body: int | None = None, max_records: int | None = None,
                 max_record_bytes: int | None = None, max_keys: int | None = None) -> IngestLimits:
        """The given values, else ``AUDITRAIL_INGEST_MAX_*``, else the defaults."""
        def pick(value: int | None, env: str, default: int) -> int:
            chosen = value if value is not None else int(os.environ.get(env) or default)
            if chosen < 1:
                raise ValueError(f"{env.removeprefix('AUDITRAIL_INGEST_').lower()} must be positive, got {chosen}")
            return chosen

        return cls(pick(max_body, MAX_BODY_ENV, DEFAULT_MAX_BODY),
                   pick(max_records, MAX_RECORDS_ENV, DEFAULT_MAX_RECORDS),
                   pick(max_record_bytes, MAX_RECORD_BYTES_ENV, DEFAULT_MAX_RECORD_BYTES),
                   pick(max_keys, MAX_KEYS_ENV, DEFAULT_MAX_KEYS))

    def max_messages(self, size: int) -> int:
        """The message budget of a request of `size` decompressed bytes."""
        return max(MESSAGE_FLOOR, size // BYTES_PER_MESSAGE)

    def max_entries(self, size: int) -> int:
        """The budget of map entries in the rows of a request of `size` decompressed bytes."""
        return max(ENTRY_FLOOR, size // BYTES_PER_ENTRY)

    def too_many_entries(self, size: int) -> LimitError:
        return LimitError(f"the rows of this {size}-byte request would hold more than {self.max_entries(size)} "
                          "attributes (each row holds its resource's and its scope's besides its own; at most one "
                          f"per {BYTES_PER_ENTRY} bytes, or {ENTRY_FLOOR}): send large resources with fewer records")

    def too_many_records(self) -> LimitError:
        return LimitError(f"more than {self.max_records} log records in one request (the records-per-request "
                          "limit, --max-records): split it")

    def record_too_large(self, index: int, size: int) -> LimitError:
        return LimitError(f"log record {index} is {size} bytes, more than the per-record limit of "
                          f"{self.max_record_bytes} (--max-record-bytes)")

    def too_many_keys(self) -> LimitError:
        return LimitError(f"more than {self.max_keys} distinct attribute keys in one request (the attribute keys "
                          "limit, --max-attribute-keys)")

    def too_many_messages(self, size: int, what: str) -> LimitError:
        return LimitError(f"more than {self.max_messages(size)} {what} in a {size}-byte request (at most one per "
                          f"{BYTES_PER_MESSAGE} bytes, or {MESSAGE_FLOOR}): the request is mostly empty entries")


class Scanned(NamedTuple):
    """What the limits' scan of a protobuf request found."""

    records: int | None  # the request's LogRecords; None where the wire was not readable to its end
    foreign: tuple[int, str] | None  # (index, tenant) of the first record plainly of another tenant


def check_protobuf(data: bytes, limits: IngestLimits, tenant: str | None = None, size: int | None = None) -> Scanned:
    """LimitError when the protobuf request `data` exceeds a limit; what is not readable is left to the decoders.
    With `tenant` (a tenant-scoped token's): the first record plainly of another tenant, found before anything
    is decoded (the decoders' check still decides every record this cannot judge). `size`: the request's size
    the budgets follow, when `data` was transcoded from it (OTLP/JSON: ingest_json.py), else len(data)."""
    size = len(data) if size is None else size
    scan = _native.otlp_logs_scan if _native is not None else scan_protobuf_python
    verdict, records, _, index, record_size, foreign = scan(data, limits.max_records, limits.max_record_bytes,
                                                      limits.max_messages(size), tenant, limits.max_keys,
                                                      limits.max_entries(size))
    if verdict == "tenant":
        return Scanned(None, (index, foreign))
    if verdict == "records":
        raise limits.too_many_records()
    if verdict == "record_bytes":
        raise limits.record_too_large(index, record_size)
    if verdict == "messages":
        raise limits.too_many_messages(size, "protobuf messages (records, attributes, values)")
    if verdict == "keys":
        raise limits.too_many_keys()
    if verdict == "entries":
        raise limits.too_many_entries(size)
    return Scanned(records if verdict == "ok" else None, None)


def check_json(data: bytes, limits: IngestLimits) -> None:
    """LimitError when an OTLP/JSON body holds more objects and arrays than its size allows (counted before
    parsing: the parse is what would spend the memory). Records are counted as decode_json reads them."""
    containers = data.count(b"{") + data.count(b"[")
    if containers > limits.max_messages(len(data)):
        raise limits.too_many_messages(len(data), "JSON objects and arrays")


# --------------------------------------------------------------------------------------------------
# The native scan's twin (native/src/limits.rs), for where the native core is not built.

_LEN, _START_GROUP, _END_GROUP = 2, 3, 4
_MAX_DEPTH = 100
# (message kind, field number) -> the kind of that length-delimited field's message
_REQUEST, _RESOURCE_LOGS, _RESOURCE, _SCOPE_LOGS, _SCOPE, _RECORD, _KEY_VALUE, _ANY, _ARRAY, _KVLIST, _LEAF = range(11)
_CHILD = {
    (_REQUEST, 1): _RESOURCE_LOGS, (_RESOURCE_LOGS, 1): _RESOURCE, (_RESOURCE_LOGS, 2): _SCOPE_LOGS,
    (_RESOURCE, 1): _KEY_VALUE, (_SCOPE, 3): _KEY_VALUE, (_RECORD, 6): _KEY_VALUE, (_KVLIST, 1): _KEY_VALUE,
    (_RESOURCE, 3): _LEAF, (_SCOPE_LOGS, 1): _SCOPE, (_SCOPE_LOGS, 2): _RECORD, (_RECORD, 5): _ANY,
    (_KEY_VALUE, 2): _ANY, (_ARRAY, 1): _ANY, (_ANY, 5): _ARRAY, (_ANY, 6): _KVLIST,
}


class _Stop(Exception):
    def __init__(self, verdict: str, index: int = 0, size: int = 0, tenant: str | None = None) -> None:
        self.verdict, self.index, self.size, self.tenant = verdict, index, size, tenant


_TENANT_KEY = b"audit.tenant_id"


def _plain_pair(data: bytes, pos: int, end: int) -> tuple[bytes, bytes] | None:
    """(key, string value) of the KeyValue at data[pos:end] in its plain shape, else None (limits.rs)."""
    fields = []
    try:
        for _ in range(2):
            if pos >= end:
                return None
            tag, pos = _varint(data, pos, end)
            length, pos = _varint(data, pos, end)
            fields.append((tag, pos, pos + length))
            pos += length
        if pos != end or [tag for tag, _, _ in fields] != [0x0A, 0x12]:
            return None
        (_, key_start, key_end), (_, start, stop) = fields
        tag, at = _varint(data, start, stop)
        length, at = _varint(data, at, stop)
    except _Stop:
        return None
    if tag != 0x0A or at + length != stop:
        return None
    return data[key_start:key_end], data[at:stop]


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Stop("unreadable")
        byte = data[pos]
        if shift == 63 and byte > 1:  # past 64 bits (Wire::varint)
            raise _Stop("unreadable")
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(tag, next position) of a field's tag; unreadable as limits.rs's Wire::tag finds it (field number 0, or
    a tag beyond 32 bits)."""
    tag, pos = _varint(data, pos, end)
    if tag >> 3 == 0 or tag > 0xFFFFFFFF:
        raise _Stop("unreadable")
    return tag, pos


def _skip(data: bytes, pos: int, end: int, number: int, wire: int, depth: int) -> int:
    if wire == 0:
        return _varint(data, pos, end)[1]
    if wire == 1 or wire == 5:
        pos += 8 if wire == 1 else 4
    elif wire == _LEN:
        length, pos = _varint(data, pos, end)
        pos += length
    elif wire == _START_GROUP and depth <= _MAX_DEPTH:
        while True:
            tag, pos = _tag(data, pos, end)
            if tag & 7 == _END_GROUP and tag >> 3 == number:
                return pos
            pos = _skip(data, pos, end, tag >> 3, tag & 7, depth + 1)
    else:
        raise _Stop("unreadable")
    if pos > end:
        raise _Stop("unreadable")
    return pos


def _key_of(data: bytes, pos: int, end: int) -> bytes | None:
    """The key of the KeyValue at data[pos:end] as upb reads it (the last one; b"" when none), None where the wire
    is not readable (limits.rs key_of)."""
    key = b""
    try:
        while pos < end:
            tag, pos = _tag(data, pos, end)
            if tag == 0x0A:
                length, pos = _varint(data, pos, end)
                key, pos = data[pos:pos + length], pos + length
                if pos > end:
                    return None
            elif tag & 7 not in (0, 1, _LEN, 5):
                return None
            else:
                pos = _skip(data, pos, end, tag >> 3, tag & 7, 0)
    except _Stop:
        return None
    return key


class _Scan:
    def __init__(self, max_records: int, max_record_bytes: int, max_messages: int, tenant: bytes | None,
                 max_keys: int, max_entries: int) -> None:
        self.max_records, self.max_record_bytes, self.max_messages = max_records, max_record_bytes, max_messages
        self.tenant, self.max_keys, self.max_entries = tenant, max_keys, max_entries
        self.keys: set[bytes] = set()
        self.records = self.messages = self.attributes = self.entries = 0

    def message(self, data: bytes, pos: int, end: int, kind: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Stop("unreadable")
        self.messages += 1
        if self.messages > self.max_messages:
            raise _Stop("messages")
        if kind == _RECORD:
            self.records += 1
            if self.records > self.max_records:
                raise _Stop("records")
            if end - pos > self.max_record_bytes:
                raise _Stop("record_bytes", self.records - 1, end - pos)
        judge = kind == _RECORD and self.tenant is not None
        tenant: bytes | None = None
        records, head = self.records, 0  # a ResourceLogs' or ScopeLogs': its resource's or scope's attributes
        while pos < end:
            tag, pos = _tag(data, pos, end)
            number, wire = tag >> 3, tag & 7
            inner = _CHILD.get((kind, number)) if wire == _LEN else None
            if inner is None:
                pos = _skip(data, pos, end, number, wire, depth + 1)
                continue
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Stop("unreadable")
            if judge and inner == _KEY_VALUE:
                pair = _plain_pair(data, pos, pos + length)
                if pair is None:
                    judge = False  # an attribute whose key is not known here came first: the decoders judge
                elif pair[0] == _TENANT_KEY:
                    tenant, judge = pair[1], False
            if inner == _KEY_VALUE and kind != _KVLIST:
                self.attributes += 1
                self.entries += kind == _RECORD
                key = _key_of(data, pos, pos + length)
                if key is not None and key not in self.keys:
                    if len(self.keys) >= self.max_keys:
                        raise _Stop("keys")
                    self.keys.add(key)
            before = self.attributes
            self.message(data, pos, pos + length, inner, depth + 1)
            if inner == _RESOURCE or inner == _SCOPE:
                head += self.attributes - before
            pos += length
        self.entries += head * (self.records - records)
        if self.entries > self.max_entries:
            raise _Stop("entries")
        if tenant is not None and tenant != self.tenant:
            raise _Stop("tenant", self.records - 1, tenant=tenant.decode(errors="replace"))


def scan_protobuf_python(data: bytes, max_records: int, max_record_bytes: int, max_messages: int,
                         tenant: str | None = None, max_keys: int = 1 << 62,
                         max_entries: int = 1 << 62) -> tuple[str, int, int, int, int, str | None]:
    """The native ``otlp_logs_scan`` in Python: (verdict, records, messages, record index, record size,
    foreign tenant)."""
    scan = _Scan(max_records, max_record_bytes, max_messages, None if tenant is None else tenant.encode(), max_keys,
                 max_entries)
    verdict, index, size, foreign = "ok", 0, 0, None
    try:
        scan.message(data, 0, len(data), _REQUEST, 0)
    except _Stop as stop:
        verdict, index, size, foreign = stop.verdict, stop.index, stop.size, stop.tenant
    return verdict, scan.records, max(scan.messages - 1, 0), index, size, foreign
