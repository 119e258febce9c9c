"""The read-only ClickHouse HTTP interface over the embedded engine, for Grafana's ClickHouse data source.

What it answers (what grafana-clickhouse-datasource in HTTP mode, i.e. clickhouse-go, and clickhouse-connect
send): POST or GET on any path, the SQL in the ``query`` URL parameter, the body (plain, chunked, gzip or
deflate), or both (joined by a newline, as ClickHouse does); ``default_format`` (clickhouse-go: ``Native``) or the SQL's own ``FORMAT``;
``database``; server-side parameters (``param_<name>``); other URL parameters are settings. ``GET /ping``.

How each request is confined, in this order (the engine session that does it is kept for the next request
confined exactly alike: same token tenant, database, settings and filters; never shared by two at once):

1. **Who**: a token of ``read`` (or ``admin``) scope, as HTTP Basic auth's password (the user is free text),
   ``X-ClickHouse-Key``, or ``Authorization: Bearer``; tokens.py compares in constant time.
2. The client's own settings (URL parameters), then ours over them (:func:`client_settings`): the limits in
   :data:`CAPPED` may be lowered, never raised (a larger or invalid value gets ours); the overflow modes
   and filters are fixed; the format and transport settings of :data:`PASSED` pass; any other setting is
   refused (``dialect``, ``max_streams_to_max_threads_ratio``... could change what a statement means or
   lift a limit sideways). ``additional_table_filters`` scopes every table (of every database but the
   engine's own) to the token's tenant (below).
3. ``SET readonly = 1``: from here the **engine** refuses writes, DDL, ``SET`` of a setting and any
   ``SETTINGS`` clause that changes one (``readonly=0`` or the filters included). Nothing is decided by
   parsing SQL ourselves.
4. The statement, as the engine's own ``EXPLAIN AST`` reads it (a pass is kept per statement shape, integer
   literals masked, so a Grafana refresh with new time bounds is not parsed again; a refusal per exact text):
   only the kinds in :data:`STATEMENTS` (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN); readonly=1 still lets
   ``KILL QUERY``, ``SYSTEM STOP MERGES``, ``USE`` and ``SET param_x`` run (measured on chDB 26.9), and
   the last two would outlive the request in a kept session. Its table functions must be in
   :data:`TABLE_FUNCTIONS`: ``merge()`` and ``mergeTreeIndex()`` read a table's storage past
   ``additional_table_filters`` (readonly=1 already refuses ``file``, ``url``, ``remote``, ``executable``...).

Tenant scoping is ``additional_table_filters`` because chDB has no users, so no row policies
(``CREATE ROW POLICY`` is refused): the engine ANDs the filter into every read of the table, including
through views (``audit_events_unique``) and subqueries, and under readonly=1 a query cannot change it.
A token of one tenant sees: tables with a ``tenant_id`` column, filtered to it; ``otel_logs`` filtered on
``LogAttributes['audit.tenant_id']``; views (their tables are filtered); nothing of any other table of
any other table (filter ``0``: ``schema_migrations``, ``api_tokens``, tables of other databases), nor of
the system tables that show other sessions' SQL (``system.processes``, ``system.mutations``...), nor a
table's TTL (``SHOW CREATE``, ``system.tables`` rows with one: it names the tenants with their own
retention contract). An
all-tenant token sees every table but ``api_tokens``. The table list is re-read every 5 s (a table made while
serving is scoped from then on; the settings worked out for a token kind are kept per table list).

clickhouse-go's handshake ``SELECT displayName(), version(), revision(), timezone()`` is answered with
revision 0: chDB writes Native blocks without block info (the revision-0 layout), so the client then reads
every later block right; the hello block itself is encoded at the revision the client sent.
"""

from __future__ import annotations

import base64
import http.server
import logging
import os
import re
import struct
import threading
import time
import zlib
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..db import engine_connection_string
from ..tokens import ALL_TENANTS, TokenInfo, TokenStore

__all__ = ["CAPPED", "HANDSHAKE", "PASSED", "PROTOCOL_PARAMETERS", "STATEMENTS", "STREAMABLE", "ClickHouseHTTPHandler",
           "GrafanaInterface", "Limits", "TABLE_FUNCTIONS", "client_settings", "content_type", "exception_block",
           "hello_block", "setting_literal"]

logger = logging.getLogger("auditrail.store.grafana")

# Table functions that read no stored table (view() runs a subquery, whose tables stay filtered).
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
                             "values", "null", "view", "generateRandom"})
# System tables that show other sessions' SQL (another tenant's literals): hidden from one-tenant tokens.
_OTHERS_QUERIES = ("system.processes", "system.mutations", "system.query_log", "system.user_query_log",
                   "system.query_views_log", "system.text_log")
# URL parameters that are protocol, not settings.
PROTOCOL_PARAMETERS = {"query", "default_format", "database", "query_id", "session_id", "session_timeout", "quota_key",
             "client_protocol_version", "compress", "decompress", "enable_http_compression", "user", "password",
             "wait_end_of_query", "buffer_size", "session_check", "role"}
# Limits a client may lower, never raise: the setting -> the Limits field holding ours.
CAPPED = {"max_execution_time": "timeout_seconds", "max_result_rows": "max_rows", "max_result_bytes": "max_result_bytes",
          "max_threads": "max_threads", "max_memory_usage": "max_memory_bytes"}
# Ours, whatever the client asks: the overflow modes make every limit an error, never a silent cut. FINAL
# reads a partition that is one merged part as it is (audit_events_unique's own setting, migration 0035, which
# a view cannot apply under readonly=1): no answer changes, as every ReplacingMergeTree of the store is either
# unpartitioned or partitioned by a column of its sort key (audit_events_v1), so copies never span partitions.
_FIXED = {"readonly": "1", "additional_table_filters": "", "result_overflow_mode": "throw",
          "timeout_overflow_mode": "throw", "read_overflow_mode": "throw",
          "do_not_merge_across_partitions_select_final": "1"}
# Settings that only shape the answer or the transport, or limit what we leave unlimited (read_overflow_mode
# 'throw'): passed as the client asks. Any other is refused.
PASSED = frozenset({"max_rows_to_read", "max_bytes_to_read", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
                    "cancel_http_readonly_queries_on_client_close", "http_response_buffer_size", "log_comment",
                    "use_query_cache", "query_cache_ttl", "session_timezone", "join_use_nulls", "extremes",
                    "date_time_output_format", "date_time_input_format", "output_format_json_quote_64bit_integers",
                    "output_format_json_quote_denormals", "output_format_json_quote_decimals",
                    "output_format_decimal_trailing_zeros", "output_format_native_encode_types_in_binary_format",
                    "output_format_arrow_string_as_string", "output_format_arrow_low_cardinality_as_dictionary",
                    "output_format_parquet_string_as_string", "output_format_json_named_tuples_as_objects",
                    "output_format_tsv_crlf_end_of_line", "output_format_csv_crlf_end_of_line",
                    "output_format_write_statistics", "format_csv_delimiter", "format_tsv_null_representation"})
# Statement kinds served (the first word of EXPLAIN AST's answer); SHOW CREATE only to all-tenant tokens.
STATEMENTS = ("SelectWithUnionQuery", "Explain", "Show", "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery",
              "ExistsDictionaryQuery", "ExistsViewQuery")
HANDSHAKE = re.compile(r"^\s*SELECT\s+displayName\(\),\s*version\(\),\s*revision\(\),\s*timezone\(\)\s*;?\s*$", re.I)
STREAMABLE = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.I)
_TABLE_FUNCTION = re.compile(r"^( *)TableExpression \(children \d+\)\n\1 Function (\w+)", re.M)
# A run of ASCII digits that is a token of its own: no word character, '.', '$' or non-ASCII character
# (which the engine's lexer reads as part of a word) on either side.
_INTEGER = re.compile(r"(?<![0-9A-Za-z_.$\u0080-\U0010ffff])[0-9]+(?![0-9A-Za-z_.$\u0080-\U0010ffff])")
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ERROR_CODE = re.compile(r"Code: (\d+)")
_STATUS = {115: 400, 164: 403, 497: 403, 516: 401, 62: 400, 60: 404, 81: 404, 159: 504, 396: 400}
_REVISION_WITH_CUSTOM_SERIALIZATION = 54454
_CHUNK = 64 * 1024
_KINDS_SECONDS = 5.0
_VERDICTS = 1024  # statement shapes (and refused texts) whose EXPLAIN AST verdict is kept
_IDLE_SESSIONS = 8  # confined sessions kept between requests
_CONFINEMENTS = 256  # (tenant, database, settings asked) whose session settings are kept


@dataclass(frozen=True)
class Limits:
    """What one request may use; the client may ask for less (CAPPED)."""

    timeout_seconds: int = 30          # max_execution_time (the engine stops the query)
    max_rows: int = 1_000_000          # max_result_rows, result_overflow_mode='throw': never a silent cut
    max_result_bytes: int = 1 << 30    # max_result_bytes: the answer's size in memory
    max_threads: int = os.cpu_count() or 1  # max_threads: the engine's own default, so no client asks more
    max_memory_bytes: int = 4 << 30    # max_memory_usage of one query
    max_sql_bytes: int = 1 << 20       # a request carries SQL only
    concurrency: int = 4               # queries at once; more wait (the engine shares the host's cores)


class QueryError(Exception):
    """An error for the client, as ClickHouse reports it (status, X-ClickHouse-Exception-Code, text)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        m = _ERROR_CODE.search(message)
        self.code = code if code is not None else int(m.group(1)) if m else 1000
        self.status = _STATUS.get(self.code, 500)


def setting_literal(value: str) -> str:
    """A URL setting value as SQL: numbers and booleans bare, everything else a quoted string."""
    if re.fullmatch(r"-?\d+(\.\d+)?", value) or value.lower() in ("true", "false"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def client_settings(params: dict[str, str], limits: Limits) -> dict[str, str]:
    """The settings a request runs with, as SQL literals: the client's (URL parameters) that PASSED allows,
    CAPPED limits at most ours, the fixed ones ours; QueryError for a fixed one changed or any other."""
    settings = {}
    for key, value in params.items():
        if key in PROTOCOL_PARAMETERS or key.startswith("param_") or key in CAPPED:
            continue
        if key in _FIXED:
            if value != _FIXED[key]:
                raise QueryError(f"Code: 164. DB::Exception: the setting {key!r} is fixed by auditrail's read-only "
                                 "Grafana interface. (READONLY)")
        elif key in PASSED:
            settings[key] = setting_literal(value)
        else:
            raise QueryError(f"Code: 164. DB::Exception: the setting {key[:64]!r} is not available through "
                             "auditrail's read-only Grafana interface (README: Grafana dashboards). (READONLY)")
    for key, field in CAPPED.items():
        ours, asked = getattr(limits, field), params.get(key, "")
        settings[key] = str(min(int(asked), ours) if asked.isdigit() and int(asked) > 0 else ours)
    settings.update((key, setting_literal(value)) for key, value in _FIXED.items() if value and key != "readonly")
    return settings


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _native_str(text: str) -> bytes:
    data = text.encode()
    return _uvarint(len(data)) + data


def hello_block(name: str, version: str, timezone: str, client_revision: int) -> bytes:
    """The Native answer to clickhouse-go's handshake, claiming revision 0, encoded at the client's revision."""
    out = bytearray()
    if client_revision > 0:
        out += _uvarint(1) + b"\x00" + _uvarint(2) + struct.pack("<i", -1) + _uvarint(0)  # block info
    out += _uvarint(4) + _uvarint(1)
    for column, ctype, value in (("displayName()", "String", _native_str(name)),
                                 ("version()", "String", _native_str(version)),
                                 ("revision()", "UInt32", struct.pack("<I", 0)),
                                 ("timezone()", "String", _native_str(timezone))):
        out += _native_str(column) + _native_str(ctype)
        if client_revision >= _REVISION_WITH_CUSTOM_SERIALIZATION:
            out += b"\x00"
        out += value
    return bytes(out)


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for a result format."""
    return "application/octet-stream" if fmt.lower() in ("native", "rowbinary", "arrow", "parquet") else \
        "text/plain; charset=UTF-8"


def presented_token(headers: Any) -> str | None:
    """The token a request carries: Basic auth's password, X-ClickHouse-Key, or a bearer token."""
    key = headers.get("X-ClickHouse-Key")
    if key:
        return key
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


class GrafanaInterface:
    """The interface's HTTP server, on a thread of ``auditrail serve``, over the service's engine."""

    def __init__(self, path: str, database: str, tokens: TokenStore, host: str = "127.0.0.1", port: int = 0,
                 limits: Limits = Limits()) -> None:
        import chdb  # the store's engine: one per process, this opens another session on it

        self._connect = lambda: chdb.connect(engine_connection_string(path))
        self.database = database
        self.tokens = tokens
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._kinds: dict[str, str] = {}
        self._kinds_at = -_KINDS_SECONDS
        self._kinds_lock = threading.Lock()
        self._sessions = _Kept(_IDLE_SESSIONS, drop=lambda conn: conn.close())  # confined sessions, by confinement
        self._verdicts = _Kept(_VERDICTS)  # check_statement's verdicts, by statement
        self._confinements = _Kept(_CONFINEMENTS)  # confinement()'s answers
        self._table_kinds()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://host:port of the interface."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GrafanaInterface:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="auditrail-grafana", daemon=True)
        self._thread.start()
        logger.info("Grafana interface (read-only ClickHouse HTTP) on %s", self.url)
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
        self._sessions.clear()

    def _table_kinds(self) -> dict[str, str]:
        """`db.table` -> 'tenant' | 'otel' | 'view' | 'hidden', for every table outside the engine's own
        databases; refreshed every few seconds, so a table made while serving is scoped too."""
        with self._kinds_lock:
            if time.monotonic() - self._kinds_at < _KINDS_SECONDS:
                return self._kinds
            conn = self._connect()
            try:
                text = conn.query(
                    "SELECT t.database, t.name, t.engine, has(groupArray(c.name), 'tenant_id'),"
                    " has(groupArray(c.name), 'LogAttributes') FROM system.tables AS t LEFT JOIN system.columns AS c"
                    " ON c.database = t.database AND c.table = t.name"
                    " WHERE t.database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema')"
                    " GROUP BY t.database, t.name, t.engine", "TabSeparated").bytes().decode()
            finally:
                conn.close()
            kinds = {}
            for line in text.splitlines():
                database, name, engine, tenant, otel = line.split("\t")
                kinds[f"{database}.{name}"] = ("tenant" if tenant == "1" else "otel" if otel == "1" else
                                               "view" if engine == "View" else "hidden")
            # The same list stays the same object: what confinement() worked out from it still holds.
            self._kinds = self._kinds if kinds == self._kinds else kinds
            self._kinds_at = time.monotonic()
            return self._kinds

    def table_filters(self, tenant: str, kinds: dict[str, str] | None = None) -> str:
        """The additional_table_filters map literal that scopes a token of `tenant` (``*``: all tenants) over
        the tables of `kinds` (None: as they are now)."""
        filters = {}
        for table, kind in (self._table_kinds() if kinds is None else kinds).items():
            if table == f"{self.database}.api_tokens":
                expr = "0"  # token hashes are for the service, not for dashboards
            elif tenant == ALL_TENANTS or kind == "view":
                continue
            elif kind == "tenant":
                expr = f"tenant_id = {_quote(tenant)}"
            elif kind == "otel":
                expr = f"LogAttributes['audit.tenant_id'] = {_quote(tenant)}"
            else:
                expr = "0"
            filters[table] = expr
        if tenant != ALL_TENANTS:
            filters.update(dict.fromkeys(_OTHERS_QUERIES, "0"))
            # A table's TTL names the tenants with their own retention contract (retention.py).
            filters["system.tables"] = "position(create_table_query, ' TTL ') = 0"
        return "{" + ", ".join(f"{_quote(k)}: {_quote(v)}" for k, v in filters.items()) + "}"

    def session(self, token: TokenInfo, params: dict[str, str], database: str | None) -> tuple[Any, tuple]:
        """An engine session confined for `token` and the key it is kept under (:meth:`release`): a kept one
        confined exactly alike, or a fresh one: the database, the settings (client_settings), readonly=1."""
        database = database or self.database
        if not _SETTING.fullmatch(database):
            raise QueryError(f"Code: 81. DB::Exception: Database {database[:64]!r} does not exist. (UNKNOWN_DATABASE)")
        settings, key = self.confinement(token.tenant_id, params, database)
        conn = self._sessions.take(key)
        if conn is not None:
            return conn, key
        conn = self._connect()
        try:
            _run(conn.query, f"USE `{database}`")
            # readonly last: from there the engine refuses any change.
            _run(conn.query, "SET " + ", ".join([*(f"{k} = {v}" for k, v in settings.items()), "readonly = 1"]))
        except BaseException:
            conn.close()
            raise
        return conn, key

    def confinement(self, tenant: str, params: dict[str, str], database: str) -> tuple[dict[str, str], tuple]:
        """The settings a request of a `tenant` token with these URL parameters runs with (client_settings and
        the tenant's table_filters) and the key its sessions are kept under; worked out once per tenant,
        database, settings asked and table list (a request of a dashboard asks what the one before did)."""
        kinds = self._table_kinds()
        asked = tuple((k, v) for k, v in params.items() if k not in PROTOCOL_PARAMETERS and not k.startswith("param_"))
        cache_key = (tenant, database, asked, id(kinds))
        known = self._confinements.get(cache_key)
        if known is not None and known[0] is kinds:  # the entry holds its table list: no later list has its id
            return known[1], known[2]
        settings = client_settings(params, self.limits)
        settings["additional_table_filters"] = self.table_filters(tenant, kinds)
        # Everything that confines the session is in its key (the filters name the tenant and every table
        # they scope), so a kept session is never handed to a request that would be confined otherwise.
        key = (database, tuple(sorted(settings.items())))
        self._confinements.put(cache_key, (kinds, settings, key))
        return settings, key

    def release(self, conn: Any, key: tuple, kind: str | None) -> None:
        """After a request: keep the session for the next one confined alike when its statement was of a kind
        that leaves no state behind (`kind`, from check_statement; None: an error, or unknown), else close it."""
        if kind is not None and kind.startswith(STATEMENTS):
            self._sessions.give(key, conn)
        else:
            conn.close()

    def check_statement(self, conn: Any, token: TokenInfo, sql: str, bound: dict[str, str]) -> str:
        """The statement's kind, as the engine parses it (EXPLAIN AST; the verdict is kept per statement shape
        and token kind); QueryError for a kind outside STATEMENTS, a table function outside TABLE_FUNCTIONS, or,
        for a one-tenant token, SHOW CREATE (a table's TTL names the tenants with their own retention contract).

        A statement passed is kept by its shape, its integer literals masked: Grafana sends each refresh with
        new time bounds (``toDateTime(1733580000)``), and a literal's value decides neither the statement's
        kind nor which table functions it calls (a masked run of digits stands alone, so it lexes as a
        number whatever its value). A refusal is kept by the exact text: it may hang on a literal (a
        statement too long to parse), so it says nothing about a statement of the same shape."""
        bound_key, all_tenants = tuple(sorted(bound.items())), token.tenant_id == ALL_TENANTS
        shape = (_INTEGER.sub("0", sql), bound_key, all_tenants)
        verdict = self._verdicts.get(shape)
        if verdict is None:
            exact = (sql, bound_key, all_tenants)
            verdict = self._verdicts.get(exact)
            if verdict is None:
                verdict = self._verdict(conn, token, sql, bound)
                self._verdicts.put(exact if isinstance(verdict, QueryError) else shape, verdict)
        if isinstance(verdict, QueryError):
            raise verdict
        return verdict

    def _verdict(self, conn: Any, token: TokenInfo, sql: str, bound: dict[str, str]) -> str | QueryError:
        ast = _run(conn.query, "EXPLAIN AST " + sql, "TSVRaw", bound).bytes().decode()
        kind = ast.split(" ", 1)[0].split("\n", 1)[0]
        if not kind.startswith(STATEMENTS):
            return QueryError(f"Code: 164. DB::Exception: only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN are served "
                              f"by auditrail's read-only Grafana interface, not {kind}. (READONLY)")
        if token.tenant_id != ALL_TENANTS and kind.startswith("ShowCreate"):
            return QueryError("Code: 164. DB::Exception: SHOW CREATE is not available to a one-tenant token "
                              "(use DESCRIBE). (READONLY)")
        for _, name in _TABLE_FUNCTION.findall(ast):
            if name not in TABLE_FUNCTIONS:
                return QueryError(f"Code: 164. DB::Exception: table function {name}() is not available through "
                                  "auditrail's read-only Grafana interface. (READONLY)")
        return kind


class _Kept:
    """A bounded, thread-safe LRU of values by key; with `many`, several values per key (each taken once)."""

    def __init__(self, size: int, drop: Any = None) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size, self._drop = size, drop
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value kept under `key` (now the newest), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        """Keep `value` under `key`; the oldest go beyond the size."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            dropped = [self._items.popitem(last=False)[1] for _ in range(len(self._items) - self._size)]
        for value in dropped:
            self._drop(value) if self._drop else None

    def take(self, key: Any) -> Any:
        """A value kept under `key`, no longer kept (so no one else gets it), or None."""
        with self._lock:
            values = self._items.get(key)
            if not values:
                return None
            value = values.pop()
            if not values:
                del self._items[key]
            return value

    def give(self, key: Any, value: Any) -> None:
        """Keep `value` with the others of `key`; the least recently given go beyond the size."""
        with self._lock:
            self._items.setdefault(key, []).append(value)
            self._items.move_to_end(key)
            dropped = []
            while sum(map(len, self._items.values())) > self._size:
                oldest = next(iter(self._items))
                dropped.append(self._items[oldest].pop(0))
                if not self._items[oldest]:
                    del self._items[oldest]
        for value in dropped:
            self._drop(value)

    def clear(self) -> None:
        """Drop everything kept."""
        with self._lock:
            values = [v for vs in self._items.values() for v in (vs if isinstance(vs, list) else [vs])]
            self._items.clear()
        for value in values:
            self._drop(value) if self._drop else None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], interface: GrafanaInterface) -> None:
        super().__init__(address, _Handler)
        self.interface = interface


class ClickHouseHTTPHandler(http.server.BaseHTTPRequestHandler):
    """The reply side of ClickHouse's HTTP interface: whole answers, and result streams sent in chunks."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every answer waits for the peer's delayed ACK
    # Replies are buffered and leave when the request is done (handle_one_request flushes) or the buffer is
    # full: a small answer is one write instead of three (status line and headers, body, end of chunks),
    # each of which woke the client for part of it (0.2 ms a query with the client in this process).
    # A result larger than the buffer passes through it as it comes.
    wbufsize = _CHUNK

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # the client left before the buffered reply went out
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        accepted = super().handle_expect_100()
        self.wfile.flush()  # the client waits for the 100 before it sends the body
        return accepted

    def _reply(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream_result(self, stream: Any, chunk: Any, fmt: str) -> bool:
        """`chunk` (the stream's first, or None) and the rest of `stream` in `fmt`: whole (Content-Length) when
        the stream ends there, else a 200 in chunks; False when the stream failed part way (an exception block
        went out instead of the rest). At most two of the stream's chunks are held at once."""
        try:
            following = None if chunk is None else stream.fetch()
        except Exception as e:
            following = e  # reported after the first chunk, as below
        data = b"" if chunk is None else chunk if isinstance(chunk, bytes) else chunk.bytes()
        if following is None:
            self._reply(200, data, content_type(fmt), {"X-ClickHouse-Format": fmt})
            return True
        self.send_response(200)
        self.send_header("Content-Type", content_type(fmt))
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._write_chunk(data)
        try:
            while following is not None:
                if isinstance(following, Exception):
                    raise following
                self._write_chunk(following if isinstance(following, bytes) else following.bytes())
                following = stream.fetch()
        except (ConnectionError, TimeoutError):
            raise
        except Exception as e:
            # What a server does once the status line is out (a limit hit mid-stream): an exception block.
            self._write_chunk(exception_block(str(e)))
            self.wfile.write(b"0\r\n\r\n")
            return False
        self.wfile.write(b"0\r\n\r\n")
        return True


class _Handler(ClickHouseHTTPHandler):
    server: _Server
    timeout = 120  # an idle or stalled client never holds a thread for ever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("grafana %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/ping", "/") and "query" not in urllib.parse.parse_qs(url.query):
            self._reply(200, b"Ok.\n", "text/plain; charset=UTF-8")
            return
        self._serve(url)

    def do_POST(self) -> None:
        self._serve(urllib.parse.urlsplit(self.path))

    def _serve(self, url: urllib.parse.SplitResult) -> None:
        interface = self.server.interface
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            sql = self._sql(params, interface.limits.max_sql_bytes)
            token = interface.tokens.authenticate(presented_token(self.headers))
            if token is None or not token.allows("read"):
                raise QueryError("Code: 516. DB::Exception: auditrail: a valid token of read scope is required "
                                 "(the password, or X-ClickHouse-Key). (AUTHENTICATION_FAILED)")
            with interface._slots:
                self._run(interface, token, params, sql)
        except QueryError as error:
            self._error(error)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _sql(self, params: dict[str, str], limit: int) -> str:
        """The statement: the ``query`` parameter and the body (Content-Length or chunked; gzip/deflate)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                if len(body) + size > limit:
                    self.close_connection = True
                    raise QueryError(f"Code: 1000. auditrail: the SQL is longer than {limit} bytes")
                body += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                self.close_connection = True
                raise QueryError(f"Code: 1000. auditrail: the SQL is longer than {limit} bytes")
            body = self.rfile.read(length) if length else b""
        encoding = self.headers.get("Content-Encoding", "").lower()
        if body and encoding in ("gzip", "deflate"):
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
            try:
                body = inflate.decompress(bytes(body), limit + 1)
            except zlib.error as e:
                raise QueryError(f"Code: 1000. auditrail: cannot decompress the {encoding} body: {e}") from None
            if len(body) > limit:
                raise QueryError(f"Code: 1000. auditrail: the SQL is longer than {limit} bytes")
        elif encoding not in ("", "identity"):
            raise QueryError(f"Code: 1000. auditrail: Content-Encoding {encoding} is not supported (none, gzip)")
        text = bytes(body).decode("utf-8", "replace")
        return "\n".join(part for part in (params.get("query", ""), text) if part)

    def _run(self, interface: GrafanaInterface, token: TokenInfo, params: dict[str, str], sql: str) -> None:
        fmt = params.get("default_format") or "TabSeparated"
        bound = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        if not sql.strip().rstrip(";").strip():
            raise QueryError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        conn, key = interface.session(token, params, params.get("database") or self.headers.get("X-ClickHouse-Database"))
        kind = None  # set once the request is answered: the session may then serve the next one
        try:
            if HANDSHAKE.match(sql) and fmt == "Native":
                name, version, tz = _run(conn.query, "SELECT displayName(), version(), timezone()",
                                         "TabSeparated").bytes().decode().rstrip("\n").split("\t")
                hello = hello_block(name, version, tz, int(params.get("client_protocol_version") or 0))
                self._reply(200, hello, content_type(fmt), {"X-ClickHouse-Format": fmt})
                kind = STATEMENTS[0]
                return
            statement = interface.check_statement(conn, token, sql, bound)
            if STREAMABLE.match(sql):
                if not self._stream(conn, sql, fmt, bound):
                    return  # failed part way: the session is not kept
            else:  # SHOW, DESCRIBE, EXPLAIN, EXISTS: chDB cannot stream those
                data = _run(conn.query, sql, fmt, bound).bytes()
                self._reply(200, data, content_type(fmt), {"X-ClickHouse-Format": fmt})
            kind = statement
        finally:
            interface.release(conn, key, kind)

    def _stream(self, conn: Any, sql: str, fmt: str, bound: dict[str, str]) -> bool:
        try:
            stream = conn.send_query(sql, fmt, bound)
            chunk = stream.fetch()
        except Exception as e:  # chDB raises ChdbError (a RuntimeError) or RuntimeError
            raise QueryError(str(e)) from None
        return self._stream_result(stream, chunk, fmt)

    def _error(self, error: QueryError) -> None:
        logger.info("grafana query refused (%d): %s", error.code, str(error)[:300])
        headers = {"X-ClickHouse-Exception-Code": str(error.code)}
        if error.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="auditrail"'
        self._reply(error.status, (str(error) + "\n").encode(), "text/plain; charset=UTF-8", headers)
        self.close_connection = True


def exception_block(message: str) -> bytes:
    """What a ClickHouse server writes into a result stream that fails after the 200 went out."""
    return f"\r\n__exception__\r\n{'0' * 16}\r\n{message}\n0 {'0' * 16}\r\n__exception__\r\n".encode()


def _run(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # the engine's errors go to the client as ClickHouse's would
        raise QueryError(str(e)) from None

