"""TEST FIXTURE, not the product: a small ClickHouse-HTTP front over chDB.

No ClickHouse server can be installed on these machines, and chDB is the same engine in-process. The
collector's clickhouse exporter speaks clickhouse-go over HTTP, so this fixture answers just enough of
ClickHouse's HTTP interface for it (and for clickhouse-connect over ``http://``):

- every request is a POST (GET works too) whose SQL is the ``query`` URL parameter, the body, or both
  (ClickHouse joins them with a newline); ``default_format`` is honoured (clickhouse-go sends ``Native``);
- clickhouse-go's handshake ``SELECT displayName(), version(), revision(), timezone()`` is answered with
  revision 0, so it decodes every later Native block in chDB's own layout (no block info); the hello block
  itself is encoded at the ``client_protocol_version`` the client sent, as a server would;
- ``INSERT ... FORMAT <fmt>`` streams the request body (chunked or not, ``Content-Encoding`` none or
  gzip) into chDB's ``send_insert``; when the data travels in the body after the SQL, it starts right
  after ``FORMAT <fmt>`` and ONE newline (a Native block may itself begin with 0x0A);
- ``SELECT``/``WITH`` results stream out of ``send_query`` chunk by chunk; everything else (DDL,
  ``DESCRIBE``, ``SET``, ``SHOW``) runs through ``query``: chDB cannot stream those;
- each request gets a fresh chDB connection (~0.3 ms), so a ``SET`` or ``USE`` never leaks into the
  next one; one lock serializes requests, since a chDB connection takes one statement at a time.

chDB allows one data directory per process, so the fixture runs as its own process
(``python tests/clickhouse_http.py --data DIR --port N``); :class:`ClickHouseHTTPFixture` starts, kills
and restarts it, which is also how the tests take "ClickHouse" down.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

# The ClickHouse HTTP protocol details the product's Grafana interface speaks too.
from auditrail_store.grafana.interface import (HANDSHAKE, PROTOCOL_PARAMETERS, STREAMABLE, ClickHouseHTTPHandler,
                                               content_type, hello_block, setting_literal)

from processes import free_port, terminate, wait_for_http

# Settings this fixture drops: inserts are always synchronous here so a test sees rows once acknowledged.
_IGNORED_SETTINGS = {"async_insert", "wait_for_async_insert", "wait_for_async_insert_timeout"}

_FORMAT_CLAUSE = re.compile(rb"\bFORMAT\s+([A-Za-z0-9_]+)", re.I)
_ERROR_CODE = re.compile(r"Code: (\d+)")
_CHUNK = 64 * 1024


class _ChunkedReader:
    """A file-like reader over an HTTP/1.1 chunked body (http.server does not decode it)."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def read(self, n: int = _CHUNK) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            line = self._raw.readline()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._raw.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
            self._left = size
        data = self._raw.read(min(n, self._left))
        self._left -= len(data)
        if self._left == 0:
            self._raw.readline()  # the CRLF after each chunk
        return data


class _LengthReader:
    """A file-like reader over a body of known Content-Length."""

    def __init__(self, raw, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, n: int = _CHUNK) -> bytes:
        if self._left <= 0:
            return b""
        data = self._raw.read(min(n, self._left))
        self._left -= len(data)
        return data


class _GunzipReader:
    """Decompresses a gzip (or zlib/deflate) request body as it is read."""

    def __init__(self, inner, encoding: str) -> None:
        self._inner = inner
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)

    def read(self, n: int = _CHUNK) -> bytes:
        while True:
            data = self._inner.read(n)
            if not data:
                return self._z.flush()
            out = self._z.decompress(data)
            if out:
                return out


class ClickHouseError(Exception):
    """A chDB error, carried to the client as ClickHouse would (HTTP 500 + exception code)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        m = _ERROR_CODE.search(message)
        self.code = int(m.group(1)) if m else 1000


class _Handler(ClickHouseHTTPHandler):
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/ping", "/") and not urllib.parse.parse_qs(url.query).get("query"):
            self._reply(200, b"Ok.\n", "text/plain; charset=UTF-8")
            return
        self._serve(url)

    def do_POST(self) -> None:
        self._serve(urllib.parse.urlsplit(self.path))

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _ChunkedReader(self.rfile)
        else:
            body = _LengthReader(self.rfile, int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            return _GunzipReader(body, encoding)
        if encoding not in ("", "identity"):
            raise ClickHouseError(f"Code: 1000. fixture: Content-Encoding {encoding} not supported (use none or gzip)")
        return body

    def _serve(self, url: urllib.parse.SplitResult) -> None:
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        self.server_params = params
        try:
            body = self._body()
            with self.server.lock:
                self._run(params, body)
        except ClickHouseError as e:
            self._error(e)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _run(self, params: dict[str, str], body) -> None:
        sql = params.get("query", "")
        head = b""
        if not sql:
            # The SQL is in the body; for an INSERT the data may follow it.
            head = _read_statement(body)
            sql, head = _split_statement(head)
        conn = self.server.connect()
        try:
            database = params.get("database") or self.headers.get("X-ClickHouse-Database")
            if database:
                _chdb_call(conn.query, f"USE `{database}`")
            for key, value in params.items():
                if key in PROTOCOL_PARAMETERS or key in _IGNORED_SETTINGS or key.startswith("param_"):
                    continue
                _chdb_call(conn.query, f"SET {key} = {setting_literal(value)}")
            fmt = params.get("default_format") or "TabSeparated"
            # Server-side parameters ({name:Type} in the SQL) arrive as param_<name>.
            bound = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
            if re.match(r"^\s*INSERT\b", sql, re.I) and _FORMAT_CLAUSE.search(sql.encode()):
                self._insert(conn, sql, head, body)
            elif re.match(r"^\s*INSERT\b", sql, re.I):
                # INSERT ... VALUES/SELECT: the rows are in the SQL itself, nothing to stream.
                rest = head + b"".join(iter(lambda: body.read(_CHUNK), b""))
                _chdb_call(conn.query, sql + ("\n" + rest.decode() if rest else ""), "TabSeparated", bound)
                self._reply(200, b"", "text/plain; charset=UTF-8")
            else:
                _drain(body)
                self._select(conn, sql, fmt, bound)
        finally:
            conn.close()

    def _insert(self, conn, sql: str, head: bytes, body) -> None:
        m = _FORMAT_CLAUSE.search(sql.encode())
        fmt = m.group(1).decode() if m else "Values"
        statement = sql[: m.start()] if m else sql
        inline = sql.encode()[m.end():] if m else b""
        if inline.startswith(b"\r\n"):
            inline = inline[2:]
        elif inline[:1] in (b"\n", b" "):
            inline = inline[1:]  # exactly one separator: Native data may begin with 0x0A
        try:
            inserter = conn.send_insert(statement.strip(), fmt)
        except RuntimeError as e:
            _drain(body)
            raise ClickHouseError(str(e))
        try:
            for piece in (inline, head):
                if piece:
                    inserter.append(piece)
            while chunk := body.read(_CHUNK):
                inserter.append(chunk)
            result = inserter.finish()
        except RuntimeError as e:
            inserter.cancel()
            _drain(body)
            raise ClickHouseError(str(e))
        self.server.inserted_rows += result.rows_written
        summary = json.dumps({"written_rows": str(result.rows_written), "written_bytes": str(result.bytes_written)})
        self._reply(200, b"", "text/plain; charset=UTF-8", {"X-ClickHouse-Summary": summary})

    def _select(self, conn, sql: str, fmt: str, bound: dict[str, str]) -> None:
        if HANDSHAKE.match(sql) and fmt == "Native":
            self._handshake(conn, int(self.server_params.get("client_protocol_version") or 0))
            return
        if sql.strip().rstrip(";").strip() == "":
            raise ClickHouseError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        if not STREAMABLE.match(sql):
            out = _chdb_call(conn.query, sql, fmt, bound)
            self._reply(200, _result_bytes(out), content_type(fmt), {"X-ClickHouse-Format": fmt})
            return
        try:
            stream = conn.send_query(sql, fmt, bound)
            first = stream.fetch()
        except Exception as e:  # chDB raises ChdbError (a RuntimeError subclass) or RuntimeError
            raise ClickHouseError(str(e))
        self._stream_result(stream, first, fmt)

    def _handshake(self, conn, client_revision: int) -> None:
        """Answer clickhouse-go's server-hello query, claiming revision 0.

        clickhouse-go decodes the hello block at the protocol revision it sent as ``client_protocol_version``
        (block info and per-column serialization flags, as a server writes them for that revision), then
        every later block at the revision the hello names. chDB writes Native without block info, which is
        the revision-0 layout, so the hello says 0 and is itself encoded here at the client's revision.
        """
        name, version, timezone = _chdb_call(conn.query, "SELECT displayName(), version(), timezone()",
                                             "TabSeparated").bytes().decode().rstrip("\n").split("\t")
        out = hello_block(name, version, timezone, client_revision)
        self._reply(200, out, content_type("Native"), {"X-ClickHouse-Format": "Native"})

    def _error(self, e: ClickHouseError) -> None:
        self.server.errors += 1
        if self.server.verbose:
            sys.stderr.write(f"clickhouse_http fixture error: {e}\n")
        self._reply(500, (str(e) + "\n").encode(), "text/plain; charset=UTF-8",
                    {"X-ClickHouse-Exception-Code": str(e.code)})
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], data_dir: str, verbose: bool) -> None:
        import chdb  # imported here: only the fixture process loads the engine

        super().__init__(address, _Handler)
        self._chdb = chdb
        self.data_dir = data_dir
        self.verbose = verbose
        self.lock = threading.Lock()
        self.inserted_rows = 0
        self.errors = 0
        # Held open for the process's life: the engine and its data directory stay loaded between requests.
        self._anchor = chdb.connect(data_dir)

    def connect(self):
        """A fresh chDB connection (session) for one request."""
        return self._chdb.connect(self.data_dir)


def _chdb_call(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # chDB's errors are RuntimeError/ChdbError; either goes to the client
        raise ClickHouseError(str(e))


def _result_bytes(result) -> bytes:
    if result is None:
        return b""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode()
    return result.bytes()


def _read_statement(body) -> bytes:
    """Read the body until the SQL is complete: all of it, or up to the data after ``FORMAT x``."""
    buf = b""
    while True:
        m = _FORMAT_CLAUSE.search(buf)
        if m and re.match(rb"^\s*INSERT\b", buf, re.I) and len(buf) > m.end():
            return buf
        chunk = body.read(_CHUNK)
        if not chunk:
            return buf
        buf += chunk


def _split_statement(buf: bytes) -> tuple[str, bytes]:
    """Split a body into (SQL, leading data bytes): an INSERT's data starts after ``FORMAT x`` + one newline."""
    m = _FORMAT_CLAUSE.search(buf)
    if m and re.match(rb"^\s*INSERT\b", buf, re.I):
        rest = buf[m.end():]
        if rest.startswith(b"\r\n"):
            rest = rest[2:]
        elif rest[:1] in (b"\n", b" "):
            rest = rest[1:]
        return buf[: m.end()].decode(), rest
    return buf.decode(), b""


def _drain(body) -> None:
    while body.read(_CHUNK):
        pass


def serve(data_dir: str, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
    """Run the fixture until SIGTERM/SIGINT; prints ``READY <port>`` once it accepts connections."""
    server = _Server((host, port), data_dir, verbose)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


class ClickHouseHTTPFixture:
    """Starts, kills and restarts the fixture process on one port and one data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log_path = log_path or self.data_dir.parent / f"clickhouse_http.{self.port}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it answers /ping."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--data", str(self.data_dir), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for_http(f"{self.url}/ping", self._proc, "the clickhouse_http fixture", timeout,
                      details=lambda: f"see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the process: ClickHouse is down until start() is called again."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def stop(self) -> None:
        """Stop the process cleanly."""
        terminate(self._proc)
        self._proc = None

    def execute(self, sql: str) -> str:
        """Run one statement; return the TabSeparated text answer."""
        req = urllib.request.Request(self.url + "/", data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise ClickHouseError(e.read().decode()) from None

    def rows(self, sql: str) -> list[dict]:
        """Run a SELECT; return its rows as dicts (JSONEachRow)."""
        url = self.url + "/?" + urllib.parse.urlencode({"default_format": "JSONEachRow"})
        req = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return [json.loads(line) for line in r.read().decode().splitlines() if line]
        except urllib.error.HTTPError as e:
            raise ClickHouseError(e.read().decode()) from None

    def __enter__(self) -> ClickHouseHTTPFixture:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def clickhouse_http(data_dir: Path) -> Iterator[ClickHouseHTTPFixture]:
    """Generator body for a pytest fixture: a running ClickHouse-HTTP front over chDB in data_dir."""
    fixture = ClickHouseHTTPFixture(data_dir)
    fixture.start()
    try:
        yield fixture
    finally:
        fixture.stop()


# auditrail's schema on the fixture: what the collector tests need from it.

def migrated(data_dir: Path) -> ClickHouseHTTPFixture:
    """A started fixture with auditrail's schema, applied by `auditrail migrate --url http://...` over HTTP."""
    fixture = ClickHouseHTTPFixture(data_dir)
    fixture.start()
    auditrail = Path(sys.executable).with_name("auditrail")  # the console script `pip install -e .` made
    done = subprocess.run([str(auditrail), "migrate", "--url", fixture.url], capture_output=True, text=True)
    if done.returncode != 0:
        fixture.stop()
        raise RuntimeError(f"auditrail migrate failed:\n{done.stdout}{done.stderr}")
    return fixture


def stored_events(fixture: ClickHouseHTTPFixture, tenant: str) -> dict[str, tuple[str, int]]:
    """event_id -> (event_type, copies) in audit_events as queries see them (audit_events_unique);
    {} while the fixture is down."""
    if not fixture.running:
        return {}
    rows = fixture.rows(
        "SELECT toString(event_id) AS id, any(event_type) AS type, count() AS n "
        f"FROM auditrail.audit_events_unique WHERE tenant_id = '{tenant}' GROUP BY id")
    return {r["id"]: (r["type"], int(r["n"])) for r in rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TEST FIXTURE: ClickHouse-HTTP front over chDB")
    parser.add_argument("--data", required=True, help="chDB data directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.data, exist_ok=True)
    serve(args.data, args.host, args.port, args.verbose)


if __name__ == "__main__":
    main()
