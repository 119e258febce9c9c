"""Issue 15, points 1, 3, 5 and 6, against a real `auditrail serve` (uvicorn, embedded chDB) over real HTTP.

Bounded work per request (records, bytes of a record, messages, distinct attribute keys, attributes the rows
hold: 413 naming the limit, before any decoding; the Python path in slices, a small multiple of the request),
gzip bodies taken whole or refused, slow and vanishing clients cut off, unknown token ids refused without a
lookup, and no request file left behind by a killed process.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from google.protobuf.json_format import MessageToDict

from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.tokens import TokenStore
from otlp_requests import length_delimited as _field
from otlp_requests import uuid7ish
from test_store_service import cli, otlp_request, start_service, stop, token_of

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@dataclass
class Svc:
    base: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    tmp: Path
    ingest: str  # every tenant
    ingest_acme: str
    admin: str

    def post(self, token: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=120) as client:
            return client.post("/v1/logs", content=content, headers={"Authorization": f"Bearer {token}", **headers})

    def events(self, tenant: str) -> list[dict]:
        with httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {self.admin}"}) as c:
            response = c.get(f"/v1/tenants/{tenant}/events", params={"format": "ndjson"})
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.split("\n") if line]

    def log(self) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")

    def peak_rss(self) -> int:
        """The service's peak resident set so far (VmHWM), bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def _service(tmp: Path, *options: str, **env: str) -> Iterator[Svc]:
    process, base, service_env = start_service(tmp, *options, **env)
    try:
        tokens = {name: token_of(cli("tokens", "create", "--tenant", tenant, "--scope", scope, env=service_env))
                  for name, tenant, scope in [("ingest", "*", "ingest"), ("ingest_acme", "acme", "ingest"),
                                              ("admin", "*", "admin")]}
        yield Svc(base, service_env, process, tmp, **tokens)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """Small limits, so that a request just over each is cheap to build; four connections at most."""
    yield from _service(tmp_path_factory.mktemp("small"), "--max-records", "1000", "--max-connections", "4",
                        "--max-attribute-keys", "100",
                        AUDITRAIL_INGEST_MAX_RECORD_BYTES="4096")  # options and variables alike


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    """The default limits; short header and body timeouts."""
    yield from _service(tmp_path_factory.mktemp("default"), AUDITRAIL_SERVE_HEADER_TIMEOUT="1",
                        AUDITRAIL_SERVE_BODY_TIMEOUT="2")


def _empty_records(count: int) -> bytes:
    """One ResourceLogs, one ScopeLogs, `count` empty LogRecords: 2 bytes each."""
    return _field(1, _field(2, b"\x12\x00" * count))


def _tenant_request(tenant: str, first: int, count: int, payload: str = "") -> bytes:
    request = otlp_request(tenant, [uuid7ish(first + i) for i in range(count)])
    if payload:
        record = request.resource_logs[0].scope_logs[0].log_records[3]
        record.attributes[-1].value.string_value = payload
    return request.SerializeToString()


def _as_json(body: bytes) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    return json.dumps(MessageToDict(ExportLogsServiceRequest.FromString(body))).encode()


# --- point 1: records, bytes of a record, messages ---------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("who", ["ingest", "ingest_acme"])
def test_records_over_the_limit_are_refused_413_naming_it(small: Svc, encoding: str, who: str) -> None:
    tenant = f"rec-{encoding}-{who}"
    token = small.ingest if who == "ingest" else small.ingest_acme
    tenant = tenant if who == "ingest" else "acme"
    first = 1_000_000 * (1 + ["ingest", "ingest_acme"].index(who)) + 100_000 * (encoding == "json")
    over = _tenant_request(tenant, first, 1001)
    exact = _tenant_request(tenant, first + 2000, 1000)
    if encoding == "json":
        over, exact = _as_json(over), _as_json(exact)
    headers = PROTOBUF if encoding == "protobuf" else JSON
    before = len(small.events(tenant))
    response = small.post(token, over, headers)
    assert response.status_code == 413, response.text
    message = response.text if encoding == "json" else response.content.decode(errors="replace")
    assert "more than 1000 log records" in message and "--max-records" in message
    assert len(small.events(tenant)) == before  # nothing of it written
    assert small.post(token, exact, headers).status_code == 200
    assert len(small.events(tenant)) == before + 1000


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_record_over_the_size_limit_is_refused_with_its_index(small: Svc, encoding: str) -> None:
    tenant = f"size-{encoding}"
    body = _tenant_request(tenant, 5_000_000 + 1000 * (encoding == "json"), 10, payload="x" * 5000)
    headers = PROTOBUF if encoding == "protobuf" else JSON
    response = small.post(small.ingest, body if encoding == "protobuf" else _as_json(body), headers)
    assert response.status_code == 413, response.text
    assert "log record 3 is" in response.content.decode(errors="replace")
    assert "4096" in response.content.decode(errors="replace")
    assert small.events(tenant) == []
    fits = _tenant_request(tenant, 5_100_000 + 1000 * (encoding == "json"), 10, payload="x" * 3000)
    assert small.post(small.ingest, fits if encoding == "protobuf" else _as_json(fits), headers).status_code == 200


@pytest.mark.parametrize("who", ["ingest", "ingest_acme"])
def test_a_million_empty_records_in_a_tiny_gzip_are_refused_before_decoding(default: Svc, who: str) -> None:
    """The red team's request (8,000,000 records in 15 KiB took 4.2 GB), refused as cheaply by the scan (a
    tenant's token) as by the native encoder (an all-tenant token's fast path), which stops at the records
    limit before it lists a scope's records (8,000,000 slices were +150 MB)."""
    body = gzip.compress(_empty_records(8_000_000))
    assert len(body) < 20_000
    peak = default.peak_rss()
    started = time.monotonic()
    response = default.post(getattr(default, who), body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.content
    assert b"more than 100000 log records" in response.content
    assert time.monotonic() - started < 10
    assert default.peak_rss() - peak < 60 << 20  # the service's peak grew by less than 60 MB


def test_json_of_empty_records_is_refused_before_it_is_parsed(default: Svc) -> None:
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b",".join([b"{}"] * 600_000) + b"]}]}]}"
    peak = default.peak_rss()
    response = default.post(default.ingest_acme, gzip.compress(body), {**JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.text
    assert "JSON objects and arrays" in response.json()["message"]
    assert default.peak_rss() - peak < 60 << 20


def test_a_record_of_a_million_empty_attributes_is_refused(default: Svc) -> None:
    body = _field(1, _field(2, _field(2, b"\x32\x00" * 400_000)))  # 800 KB, one record: upb would hold 23 MB
    response = default.post(default.ingest, body, PROTOBUF)
    assert response.status_code == 413
    assert b"protobuf messages" in response.content


def _attribute(key: bytes, value: bytes | None = b"v") -> bytes:
    """A KeyValue as a LogRecord, Resource or scope attribute (field 6 / 1 / 3 wraps it); no value: None."""
    return _field(1, key) + (b"" if value is None else _field(2, _field(1, value)))


def _keys_record(tenant: str, event: int, keys: int) -> bytes:
    """A LogRecord of the tenant, an event id and `keys` more distinct attribute keys."""
    pairs = [_attribute(b"audit.tenant_id", tenant.encode()), _attribute(b"audit.event_id", uuid7ish(event).encode())]
    return b"".join(_field(6, pair) for pair in pairs + [_attribute(b"k%d" % i, None) for i in range(keys)])


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_more_distinct_attribute_keys_than_the_limit_are_refused_413(small: Svc, encoding: str) -> None:
    """Each distinct key is an entry of the engine's LowCardinality dictionary (~100 bytes): 3.5 million of
    them in 63 MiB took the service +1 GB. Limit 100 here (--max-attribute-keys): 102 are refused, 98 kept."""
    tenant = f"keys-{encoding}"
    first = 5_200_000 + 1000 * (encoding == "json")
    scope = _field(1, _field(1, b"auditrail"))  # an audit record: the view copies it into audit_events
    over = _field(1, _field(2, scope + _field(2, _keys_record(tenant, first, 100))))
    fits = _field(1, _field(2, scope + _field(2, _keys_record(tenant, first + 1, 98))))
    if encoding == "json":
        over, fits = _as_json(over), _as_json(fits)
    headers = PROTOBUF if encoding == "protobuf" else JSON
    response = small.post(small.ingest, over, headers)
    assert response.status_code == 413, response.content
    assert b"more than 100 distinct attribute keys" in response.content
    assert b"--max-attribute-keys" in response.content
    assert small.events(tenant) == []
    assert small.post(small.ingest, fits, headers).status_code == 200
    assert len(small.events(tenant)) == 1


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_resource_every_row_repeats_is_refused_413_before_its_rows_are_built(default: Svc, encoding: str) -> None:
    """Every otel_logs row holds its resource's and its scope's attributes: 1,000 resource attributes over
    20,000 one-line records are 257 KB on the wire and 20 million map entries (a 221 MB Native block)."""
    resource = _field(1, b"".join(_field(1, _attribute(b"r%05d" % (i % 5000))) for i in range(1000)))
    records = b"".join(_field(2, _field(6, _attribute(b"audit.tenant_id", b"acme"))) for _ in range(20_000))
    body = _field(1, resource + _field(2, records))
    peak = default.peak_rss()
    response = default.post(default.ingest, body if encoding == "protobuf" else _as_json(body),
                            PROTOBUF if encoding == "protobuf" else JSON)
    assert response.status_code == 413, response.content
    assert b"would hold more than 250000 attributes" in response.content
    assert default.peak_rss() - peak < 60 << 20


def _keys_only_request(tenant: str, size: int) -> bytes:
    """The densest request the limits let through (protobuf): records of 10,000 attributes, each a 5-character
    key of one pool (the distinct keys limit) and no value (9 bytes, one message: the messages limit is one per
    8 bytes), `size` bytes; ~1.9 million map entries a 16 MiB."""
    pool = [_field(6, _attribute(b"%05d" % i, None)) for i in range(9_998)]
    record = b"".join(pool)
    records = []
    while sum(map(len, records)) < size:
        records.append(_field(6, _attribute(b"audit.tenant_id", tenant.encode())) + record)
    return _field(1, _field(2, b"".join(_field(2, r) for r in records)))


def test_the_densest_request_within_the_limits_costs_a_small_multiple_of_its_size(tmp_path: Path) -> None:
    """A fresh service, a tenant's token (the Python path), 16 MiB of the densest records the limits allow:
    the service's peak grows by less than 8x the request (measured +111 MiB, 6.6x, most of it the engine's
    insert of 1.9 million map entries, ~45 bytes each; before: +443 MiB, 26x: upb's objects of the whole
    request, then ~90 bytes of Python objects an attribute, the JSON document, then the insert)."""
    body = _keys_only_request("acme", 16 << 20)
    for svc in _service(tmp_path):
        # a first small insert: the engine's own first-insert costs are not the request's
        assert svc.post(svc.ingest_acme, _tenant_request("acme", 9_500_000, 10), PROTOBUF).status_code == 200
        peak = svc.peak_rss()
        response = svc.post(svc.ingest_acme, body, PROTOBUF)
        grown = svc.peak_rss() - peak
        assert response.status_code == 200, response.content
        assert grown < 8 * len(body), f"+{grown >> 20} MiB for a {len(body) >> 20} MiB request"


def _json_keys_only_request(size: int) -> bytes:
    """The worst OTLP/JSON request found: records of 10,000 attributes `{"key":"00001"}` (16 bytes and one
    object each: the objects limit is one per 8 bytes) of one pool of keys, `size` bytes."""
    pairs = ",".join('{"key":"%05d"}' % i for i in range(9_998))
    record = '{"attributes":[{"key":"audit.tenant_id","value":{"stringValue":"acme"}},' + pairs + "]}"
    records = ",".join([record] * (size // (len(record) + 1)))
    return ('{"resourceLogs":[{"scopeLogs":[{"scope":{"name":"auditrail"},"logRecords":[' + records + "]}]}]}").encode()


@pytest.mark.parametrize("who", ["ingest_acme", "ingest"])
def test_the_worst_json_request_costs_a_small_multiple_of_its_size(tmp_path: Path, who: str) -> None:
    """A fresh service, 16 MiB of the worst OTLP/JSON request: read as a stream into protobuf (ingest_json.py),
    then the protobuf path (a tenant's token: the scan and slices; an all-tenant token: the native encoder), the
    service's peak grows by less than 8x the body. Before, orjson's document of the whole body and decode_json's
    rows took it to 21.6x (+1,424 MB for 63 MiB; this request: +353 MiB, 21x; now +72-76 MB, 4.3-4.6x)."""
    body = _json_keys_only_request(16 << 20)
    for svc in _service(tmp_path):
        assert svc.post(svc.ingest_acme, _tenant_request("acme", 9_600_000, 10), PROTOBUF).status_code == 200
        peak = svc.peak_rss()
        response = svc.post(getattr(svc, who), body, JSON)
        grown = svc.peak_rss() - peak
        assert response.status_code == 200, response.content
        assert grown < 8 * len(body), f"+{grown >> 20} MiB for a {len(body) >> 20} MiB request"
        print(f"{who}: +{grown / 1e6:.0f} MB for {len(body) / 1e6:.1f} MB ({grown / len(body):.1f}x)")


def test_a_request_read_in_slices_is_still_all_or_nothing(default: Svc) -> None:
    """4,000 records (~1 MB: four slices of the Python path). Invalid UTF-8 in the last record: 400, and none of
    the slices before it written; a tenant id outside the syntax in record 3,500: 400 naming record 3,500."""
    request = otlp_request("acme", [uuid7ish(9_600_000 + i) for i in range(4000)])
    request.resource_logs[0].scope_logs[0].log_records[3999].attributes[3].value.string_value = "MARKER"
    body = request.SerializeToString().replace(b"MARKER", b"\xff\xfeMARK")  # same length: lengths still hold
    before = len(default.events("acme"))
    response = default.post(default.ingest_acme, body, PROTOBUF)
    assert response.status_code == 400, response.content
    assert b"malformed protobuf" in response.content
    assert len(default.events("acme")) == before
    request = otlp_request("slices", [uuid7ish(9_700_000 + i) for i in range(4000)])
    request.resource_logs[0].scope_logs[0].log_records[3500].attributes[1].value.string_value = "no spaces"
    response = default.post(default.ingest, request.SerializeToString(), PROTOBUF)
    assert response.status_code == 400, response.content
    assert b"record 3500: audit.tenant_id" in response.content
    assert default.events("slices") == []


# --- point 3: gzip bodies whole or not at all --------------------------------------------------------------


def test_every_gzip_member_is_ingested(default: Svc) -> None:
    first, second = _tenant_request("gz-members", 7_000_000, 3), _tenant_request("gz-members", 7_000_010, 4)
    body = gzip.compress(first) + gzip.compress(second)  # concatenated protobuf messages are one message
    response = default.post(default.ingest, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.content
    assert len(default.events("gz-members")) == 7


@pytest.mark.parametrize("trailer", [b"garbage", b"\x00" * 8, gzip.compress(b"x")[:10]])
def test_trailing_data_after_a_gzip_body_is_refused_and_nothing_written(default: Svc, trailer: bytes) -> None:
    body = gzip.compress(_tenant_request("gz-trailer", 7_100_000, 3)) + trailer
    response = default.post(default.ingest, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 400, response.content
    assert default.events("gz-trailer") == []


def test_a_zip_bomb_stops_at_the_byte_limit(default: Svc) -> None:
    body = gzip.compress(b"\x00" * (200 << 20), compresslevel=9)  # 200 MiB in ~200 KB
    peak = default.peak_rss()
    response = default.post(default.ingest, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 413, response.content
    assert b"larger than 67108864 bytes" in response.content
    assert default.peak_rss() - peak < 200 << 20  # at most the 64 MiB limit and its copy, never 200 MiB


# --- point 5: slow and unauthenticated clients --------------------------------------------------------------


def _connect(svc: Svc) -> socket.socket:
    host, port = svc.base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=8)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(closed by the server within `seconds`, what it sent before)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, socket.timeout):
        return False, received
    except ConnectionResetError:
        pass
    return True, received


@pytest.mark.parametrize("sent", [b"", b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Ty"])
def test_a_connection_without_complete_headers_is_closed(default: Svc, sent: bytes) -> None:
    with _connect(default) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        closed, _ = _closed_within(sock, 6)
    assert closed and time.monotonic() - started < 4


def test_a_stalled_body_is_answered_408_and_the_connection_closed(default: Svc) -> None:
    with _connect(default) as sock:
        sock.sendall(f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {default.ingest}\r\n"
                     "Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n".encode() + b"\x0a" * 10)
        closed, answer = _closed_within(sock, 8)
    assert closed and answer.startswith(b"HTTP/1.1 408"), answer


def test_a_client_that_disconnects_mid_body_is_one_log_line(default: Svc) -> None:
    with _connect(default) as sock:
        sock.sendall(f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {default.ingest}\r\n"
                     "Content-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n".encode() + b"\x0a" * 10)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while "disconnected during POST /v1/logs" not in default.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = default.log()
    assert "disconnected during POST /v1/logs" in log
    assert "Exception in ASGI application" not in log and "Traceback" not in log


def test_connections_beyond_the_cap_are_answered_503(small: Svc) -> None:
    idle = [_connect(small) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert httpx.get(small.base + "/healthz", timeout=10).status_code == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(small.base + "/healthz", timeout=10).status_code == 200


def _cpu_per_request(svc: Svc, tokens: list[str]) -> float:
    service = psutil.Process(svc.process.pid)
    with httpx.Client(base_url=svc.base, timeout=30) as client:
        before = sum(service.cpu_times()[:2])
        for token in tokens:
            assert client.get("/v1/tenants/acme/events", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        return (sum(service.cpu_times()[:2]) - before) / len(tokens)


def test_unknown_token_ids_cost_no_lookup_and_a_new_token_works_at_once(default: Svc) -> None:
    unknown = [f"art_{os.urandom(8).hex()}_{'A' * 43}" for _ in range(300)]
    malformed = [f"art_{os.urandom(8).hex()}_short" for _ in range(300)]
    _cpu_per_request(default, malformed[:20])  # warm
    cpu_malformed = min(_cpu_per_request(default, malformed[:150]), _cpu_per_request(default, malformed[150:]))
    cpu_unknown = min(_cpu_per_request(default, unknown[:150]), _cpu_per_request(default, unknown[150:]))
    assert cpu_unknown < 2 * cpu_malformed + 0.0005, (cpu_unknown, cpu_malformed)
    # a token created through the service right after: accepted at once
    with httpx.Client(base_url=default.base, timeout=30, headers={"Authorization": f"Bearer {default.admin}"}) as c:
        created = c.post("/v1/admin/tokens", json={"tenant": "acme", "scope": "read"}).json()["token"]
        assert c.get("/v1/tenants/acme/events", headers={"Authorization": f"Bearer {created}"}).status_code == 200


def test_a_token_created_by_another_replica_is_accepted_within_the_unknown_window(tmp_path: Path) -> None:
    with Store.open(f"chdb://{tmp_path}/store") as store:
        migrate(store)
        here, elsewhere = TokenStore(store, unknown_seconds=0.5), TokenStore(store, unknown_seconds=0.5)
        assert here.authenticate(f"art_{'0' * 16}_{'A' * 43}") is None  # reads the (empty) known ids
        token, _ = elsewhere.create("acme", "read")
        assert here.authenticate(token) is None  # unknown here for now: no lookup was made
        time.sleep(0.6)
        assert here.authenticate(token) is not None


# --- point 6: crash leftovers -----------------------------------------------------------------------------


def _spool_files(spool: Path) -> list[Path]:
    return [path for path in spool.rglob("*") if path.is_file()]


def test_a_restart_removes_the_request_files_of_a_killed_instance(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    bodies = [_tenant_request("crash", 8_000_000 + 5000 * i, 5000) for i in range(4)]
    leftovers: list[Path] = []
    for _attempt in range(6):
        process, base, env = start_service(tmp_path, AUDITRAIL_INGEST_SPOOL=str(spool))
        ingest = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest", env=env))
        stop_sending = threading.Event()

        def send(base: str = base, ingest: str = ingest, stop_sending: threading.Event = stop_sending) -> None:
            with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {ingest}", **PROTOBUF}) as c:
                while not stop_sending.is_set():
                    for body in bodies:
                        try:
                            c.post("/v1/logs", content=body)
                        except httpx.HTTPError:
                            return

        senders = [threading.Thread(target=send) for _ in range(3)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 20
        while not (leftovers := [p for p in _spool_files(spool) if p.suffix == ".pb"]) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        stop_sending.set()
        for sender in senders:
            sender.join()
        leftovers = [p for p in leftovers if p.exists()]
        if leftovers:
            break
    assert leftovers, "no request file was caught in the spool at kill time"
    process, base, env = start_service(tmp_path, AUDITRAIL_INGEST_SPOOL=str(spool))
    try:
        assert not any(p.exists() for p in leftovers)
        assert _spool_files(spool) == []  # the new instance's own directory holds nothing between inserts
        assert len(list(spool.iterdir())) == 1  # and it is the only one
    finally:
        stop(process)
    assert list(spool.iterdir()) == []  # a clean stop removes it too


def test_a_foreign_tenant_is_refused_before_decoding_with_its_record(default: Svc) -> None:
    """A tenant-scoped token's request holding another tenant's record: 403 from the wire scan, naming it."""
    body = _tenant_request("globex", 9_000_000, 500_000 // 5)  # 100,000 records, all of globex
    peak = default.peak_rss()
    response = default.post(default.ingest_acme, body, PROTOBUF)
    assert response.status_code == 403, response.content
    assert b"'globex' (log record 0)" in response.content
    assert default.peak_rss() - peak < 60 << 20  # the 40 MB body and its copy at most: nothing decoded


def test_the_native_scan_and_its_python_twin_agree_on_mutated_requests() -> None:
    import random

    import auditrail_native

    from auditrail_store.ingest_limits import scan_protobuf_python

    request = otlp_request("acme", [uuid7ish(i) for i in range(5)])
    request.resource_logs[0].scope_logs[0].log_records[3].attributes[1].value.string_value = "globex"
    for i, record in enumerate(request.resource_logs[0].scope_logs[0].log_records):
        # fixed times: the mutations below hit the same bytes on every run (with the clock's, the twin's
        # tag check, below, failed in some minutes and not in others)
        record.time_unix_nano = record.observed_time_unix_nano = 1_767_225_600_123_456_789 + i
    clean = request.SerializeToString()
    # a field whose tag is past 32 bits, and a varint past 64 bits, are unreadable to both (Wire::tag, varint)
    odd = [b"\x80\x80\x80\x80\x20\x00" + clean, b"\x08" + b"\xff" * 9 + b"\x02" + clean]
    rng = random.Random(15)
    bodies = [*odd, *(mutated(bytearray(clean), rng) for _ in range(1500))]
    for body in bodies:
        for tenant in (None, "acme"):
            for limits in ((1000, 1 << 20, 10**6, 10**6, 10**6), (3, 200, 40, 6, 10**6), (1000, 1 << 20, 10**6, 3, 60),
                           (1000, 1 << 20, 10**6, 10**6, 25)):
                native = auditrail_native.otlp_logs_scan(body, *limits[:3], tenant, *limits[3:])
                assert native == scan_protobuf_python(body, *limits[:3], tenant, *limits[3:]), (body, tenant, limits)
    assert {auditrail_native.otlp_logs_scan(body, 1000, 1 << 20, 10**6)[0] for body in odd} == {"unreadable"}


def mutated(body: bytearray, rng: Any) -> bytes:
    """`body` with up to four random bytes replaced."""
    for _ in range(rng.randint(0, 4)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return bytes(body)


def test_the_native_encoder_stops_at_the_limits_exactly_where_the_scan_does() -> None:
    """The fast path's encoder counts records, record bytes, messages, distinct attribute keys and the rows' map
    entries as it reads (one pass over the wire,
    not the scan's and then its own): it must take a request exactly when the scan passes it. At each limit's
    boundary, and on mutated requests: a block only for what the scan passes; "limit" only for what it refuses
    or cannot read."""
    import random

    import auditrail_native

    request = otlp_request("acme", [uuid7ish(i) for i in range(5)])
    request.resource_logs[0].resource.attributes.add(key="host.name").value.string_value = "a"
    request.resource_logs[0].scope_logs[0].log_records[1].body.array_value.values.add().int_value = 7
    request.resource_logs[0].scope_logs[0].log_records[2].body.kvlist_value.values.add(key="k").value.bool_value = True
    clean = request.SerializeToString()
    verdict, records, messages, _, _, _ = auditrail_native.otlp_logs_scan(clean, 10**6, 1 << 20, 10**6)
    assert (verdict, records) == ("ok", 5) and messages > 5 * 10
    largest = max(len(r.SerializeToString()) for r in request.resource_logs[0].scope_logs[0].log_records)
    resource, scope = request.resource_logs[0].resource, request.resource_logs[0].scope_logs[0]
    keys = {kv.key for kv in resource.attributes} | {kv.key for kv in scope.scope.attributes} | {
        kv.key for r in scope.log_records for kv in r.attributes}
    entries = sum(len(resource.attributes) + len(scope.scope.attributes) + len(r.attributes) for r in scope.log_records)
    # messages + 1: the scan counts the request itself against the budget
    exact = (records, largest, messages + 1, len(keys), entries)

    def scan(body: bytes, limits: tuple[int, ...]) -> str:
        return auditrail_native.otlp_logs_scan(body, *limits[:3], None, *limits[3:])[0]

    assert scan(clean, exact) == "ok" and auditrail_native.otlp_logs_native(clean, *exact)[0] == 5
    for at in range(5):
        under = list(exact)
        under[at] -= 1
        assert scan(clean, tuple(under)) != "ok"
        assert auditrail_native.otlp_logs_native(clean, *under) == "limit", under
    rng = random.Random(15)
    for _ in range(1500):
        body = mutated(bytearray(clean), rng)
        for limits in ((1000, 1 << 20, 10**6, 10**6, 10**6), (3, 200, 40, 10**6, 10**6), (5, 1000, 180, 10**6, 10**6),
                       (1000, 1 << 20, 10**6, len(keys), entries), (1000, 1 << 20, 10**6, 4, 10**6),
                       (1000, 1 << 20, 10**6, 10**6, entries - 3)):
            scanned = scan(body, limits)
            try:
                encoded = auditrail_native.otlp_logs_native(body, *limits)
            except ValueError:
                continue  # not read natively: the scan runs, then upb
            if encoded == "limit":  # (a scope's records are listed before they are read: the scan, reading in
                # order, may find the body unreadable first; upb then refuses it)
                assert scanned in ("records", "record_bytes", "messages", "keys", "entries", "unreadable"), (
                    body, limits)
            elif encoded is not None:
                assert scanned == "ok", (bytes(body), limits, scanned)


def test_endless_request_headers_close_the_connection(default: Svc) -> None:
    with _connect(default) as sock:
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            for _ in range(64):
                sock.sendall(b"X-Pad: " + b"a" * 16_000 + b"\r\n")  # 1 MB of headers, never ending
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, _ = _closed_within(sock, 6)
    assert closed and time.monotonic() - started < 0.9  # well before the 1 s header timeout
