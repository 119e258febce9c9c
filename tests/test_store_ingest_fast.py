"""The engine-decoding ingest path (auditrail_store.ingest_fast) writes exactly the rows of the existing path.

The existing path (ingest.decode_protobuf + LogWriter) is the reference: test_store_ingest_parity.py proves it
equal to the real collector's exporter, and test_store_ingest_parity also drives this path against the
collector's rows. Here: random requests, pdata's own AsString vectors, the schema file against the installed
opentelemetry-proto descriptors, wire shapes the engine might read otherwise, and all-or-nothing on refusal.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

import test_store_ingest
from otlp_requests import length_delimited as _field
from otlp_requests import logs_request, uuid7ish, varint as _varint
from auditrail_store.db import Store
from auditrail_store.ingest import IngestError, LogWriter, decode_protobuf
from auditrail_store import ingest_fast
from auditrail_store.ingest_fast import SCHEMA_PATH, FastLogWriter
from auditrail_store.migrate import migrate

VECTORS = json.loads((Path(__file__).parent / "data" / "pdata_asstring_vectors.json").read_text())
COLUMNS = ("toUnixTimestamp64Nano(Timestamp) AS ts, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, "
           "ServiceName, Body, ResourceSchemaUrl, mapKeys(ResourceAttributes) AS rk, "
           "mapValues(ResourceAttributes) AS rv, ScopeSchemaUrl, ScopeName, ScopeVersion, "
           "mapKeys(ScopeAttributes) AS sk, mapValues(ScopeAttributes) AS sv, mapKeys(LogAttributes) AS lk, "
           "mapValues(LogAttributes) AS lv, EventName")
ORDER = " ORDER BY ts, Body, lk, lv, rk, rv, sk, sv, TraceId, SpanId, SeverityNumber, TraceFlags, EventName"


class Twins:
    """One embedded store with two copies of otel_logs: `fast` (this path) and `slow` (the existing one)."""

    def __init__(self, store: Store, native: bool) -> None:
        self.store = store
        for table in ("fast", "slow"):
            store.command(f"CREATE TABLE auditrail.{table} AS auditrail.otel_logs")
            store.command(f"ALTER TABLE auditrail.{table} REMOVE TTL")  # random times: keep every row
        self.slow = LogWriter(store.client, store.database, table="slow")
        writer = FastLogWriter.for_store(store, self.slow.columns, table="fast", min_rows=1, native=native)
        assert writer is not None
        self.fast = writer

    def rows(self, table: str) -> list[tuple]:
        return self.store.query(f"SELECT {COLUMNS} FROM auditrail.{table}{ORDER}").result_rows

    def count(self, table: str) -> int:
        return int(self.store.query(f"SELECT count() FROM auditrail.{table}").result_rows[0][0])

    def both(self, data: bytes) -> int | None:
        """Write through both paths; what the fast path returned."""
        written = self.fast.write(data)
        if written is not None:
            self.slow.write(decode_protobuf(data))
        return written


@pytest.fixture(params=["native", "engine"])
def twins(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Twins]:
    """Both decoders of the fast path: the native core (when built) and the engine's protobuf statement."""
    if request.param == "native" and ingest_fast._native is None:
        pytest.skip("the native core is not built (make install builds it when cargo is on the PATH)")
    store = Store.open(f"chdb://{tmp_path}/store")
    try:
        migrate(store)
        pair = Twins(store, native=request.param == "native")
        try:
            yield pair
        finally:
            pair.fast.close()
    finally:
        store.close()


_RANDOM_VALUE = test_store_ingest._random_value


def _plain_value(rng: random.Random, depth: int = 0) -> AnyValue:
    """test_store_ingest's random values without the kinds this path leaves to the existing one."""
    value = _RANDOM_VALUE(rng, depth)
    if value.WhichOneof("value") in ("double_value", "array_value", "kvlist_value"):
        return AnyValue(string_value=rng.choice(["", "d", "ü"]))
    return value


def _storable(request: ExportLogsServiceRequest) -> ExportLogsServiceRequest:
    """`request` with its times below 2^63 ns: later ones are refused (validation.py), on either path."""
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                record.time_unix_nano %= 1 << 63
    return request


def _plain_requests(seed: int, count: int, monkeypatch: pytest.MonkeyPatch) -> list[ExportLogsServiceRequest]:
    rng = random.Random(seed)
    with monkeypatch.context() as patch:
        patch.setattr(test_store_ingest, "_random_value", _plain_value)
        return [_storable(test_store_ingest._random_request(rng)) for _ in range(count)]


def test_random_requests_give_the_existing_paths_rows(twins: Twins, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = 0
    for request in _plain_requests(4, 100, monkeypatch):
        written = twins.both(request.SerializeToString())
        assert written is not None, "strings, ints, bools, bytes and empty values are this path's own"
        taken += written
    fast, slow = twins.rows("fast"), twins.rows("slow")
    assert taken > 200 and len(fast) == taken
    assert fast == slow
    assert any(row[16] != sorted(set(row[16])) for row in fast), "repeated and unsorted keys were exercised"


def test_records_of_one_key_shape_and_then_another_sort_each_records_keys(twins: Twins) -> None:
    """The native encoder sorts a key shape once and reuses the order while the next records repeat it: every
    change of shape (other keys, the same keys in another order, one more or fewer, a repeated key) is sorted
    anew, ties in request order, as the existing path sorts each record."""
    shapes = [["z", "a", "m", "a"], ["z", "a", "m", "a"], ["a", "z", "m", "a"], ["z", "a", "m", "b"],
              ["z", "a", "m"], [], ["b", "a"], ["b", "a"], ["z", "a", "m", "a", "a"], ["z", "a", "m", "a"]]
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for n, keys in enumerate(shapes):
        record = records.add(time_unix_nano=1_700_000_000_000_000_000 + n, body=AnyValue(string_value=f"r{n}"))
        for position, key in enumerate(keys):
            record.attributes.add(key=key, value=AnyValue(string_value=f"{n}.{position}"))
    assert twins.both(request.SerializeToString()) == len(shapes)
    fast = twins.rows("fast")
    assert fast == twins.rows("slow")
    # ties (a repeated key) in request order
    assert [(row[16], row[17]) for row in fast[:3]] == [
        (["a", "a", "m", "z"], ["0.1", "0.3", "0.2", "0.0"]), (["a", "a", "m", "z"], ["1.1", "1.3", "1.2", "1.0"]),
        (["a", "a", "m", "z"], ["2.0", "2.3", "2.2", "2.1"])]


def test_values_go_formats_are_left_to_the_existing_path(twins: Twins) -> None:
    rng = random.Random(5)
    declined = 0
    for _ in range(120):
        data = _storable(test_store_ingest._random_request(rng)).SerializeToString()
        if twins.fast.write(data) is None:
            declined += 1
        else:
            twins.slow.write(decode_protobuf(data))
    if twins.fast._native is not None:  # the native core formats doubles, arrays and kvlists as pdata does
        assert declined == 0
    else:  # the engine's statement leaves them to the existing path
        assert declined > 20
    assert twins.rows("fast") == twins.rows("slow")


def test_pdata_asstring_vectors(twins: Twins) -> None:
    """Each vector alone (body and attribute v): equal to pdata's string, or left to the existing path."""
    request = ExportLogsServiceRequest.FromString(base64.b64decode(VECTORS["request_protobuf_base64"]))
    records = [record for rl in request.resource_logs for sl in rl.scope_logs for record in sl.log_records]
    assert len(records) == len(VECTORS["vectors"])
    taken = 0
    for record, vector in zip(records, VECTORS["vectors"], strict=True):
        single = ExportLogsServiceRequest()
        single.resource_logs.add().scope_logs.add().log_records.append(record)
        twins.store.command("TRUNCATE TABLE auditrail.fast")
        if twins.fast.write(single.SerializeToString()) is None:
            assert record.body.WhichOneof("value") in ("double_value", "array_value", "kvlist_value"), vector["name"]
            continue
        taken += 1
        (body, value), = twins.store.query("SELECT Body, LogAttributes['v'] FROM auditrail.fast").result_rows
        assert (body, value) == (vector["as_string"], vector["as_string"]), vector["name"]
    assert taken >= 5


def test_the_schema_file_matches_the_installed_opentelemetry_proto() -> None:
    """Every field of proto/otlp_logs_ingest.proto has the installed descriptors' name, number and wire type."""
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    descriptors = {name: d for module in (common_pb2, resource_pb2, logs_pb2)
                   for name, d in module.DESCRIPTOR.message_types_by_name.items()}
    descriptors["ExportLogsServiceRequest"] = ExportLogsServiceRequest.DESCRIPTOR
    wire = {"string": 2, "bytes": 2, "bool": 0, "int64": 0, "int32": 0, "uint32": 0, "double": 1, "fixed64": 1,
            "fixed32": 5}
    wire_of_type = {9: 2, 12: 2, 8: 0, 3: 0, 5: 0, 13: 0, 14: 0, 1: 1, 6: 1, 7: 5, 11: 2}
    text = SCHEMA_PATH.read_text()
    checked = 0
    for message, body in re.findall(r"message (\w+) \{(.*?)\n\}", text, flags=re.S):
        fields = descriptors[message].fields_by_name
        for kind, name, number in re.findall(r"(?:repeated )?(\w+) (\w+) = (\d+);", body):
            field = fields[name]
            assert field.number == int(number), (message, name)
            assert wire.get(kind, 2) == wire_of_type[field.type], (message, name)
            checked += 1
    assert checked == 37  # every field of the file


def _kv(key: str, value: bytes) -> bytes:
    key_bytes = key.encode()
    return b"\x0a" + bytes([len(key_bytes)]) + key_bytes + b"\x12" + bytes([len(value)]) + value


def _wrap_record(record: bytes) -> bytes:
    """An ExportLogsServiceRequest holding one ResourceLogs / ScopeLogs / LogRecord with these record bytes."""
    scope_logs = b"\x12" + bytes([len(record)]) + record
    resource_logs = b"\x12" + bytes([len(scope_logs)]) + scope_logs
    return b"\x0a" + bytes([len(resource_logs)]) + resource_logs


@pytest.mark.parametrize("record", [
    # a singular field twice (protobuf: the last one wins)
    b"\x1a\x01A\x1a\x01B",
    b"\x62\x01x\x62\x01y",
    b"\x10\x05\x10\x09",
    b"\x45\x01\x00\x00\x00\x45\x02\x00\x00\x00",
    # the body twice (messages merge), and an AnyValue with two oneof members (the last one wins)
    b"\x2a\x03\x0a\x01a\x2a\x03\x0a\x01b",
    b"\x2a\x05\x0a\x01a\x18\x07",
    b"\x2a\x05\x18\x07\x0a\x01a",
    # a bool of 2 and of 256, an int beyond int32, a severity beyond int32 and a negative one
    b"\x2a\x02\x10\x02",
    b"\x2a\x03\x10\x80\x02",
    b"\x2a\x06\x18\x80\x80\x80\x80\x10",
    b"\x10\x80\x80\x80\x80\x10",
    b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    # unknown fields, and known numbers with another wire type (protobuf: unknown fields)
    b"\x78\x01\x1a\x01A",
    b"\x08\x05\x1a\x01A",
    b"\x32" + bytes([len(_kv("k", b"\x0a\x01v")) + 2]) + _kv("k", b"\x0a\x01v") + b"\x18\x01",
    # a key twice inside one KeyValue, a string_value_strindex, a key_strindex
    b"\x32" + bytes([len(_kv("k", b"\x0a\x01v")) + 3]) + _kv("k", b"\x0a\x01v") + b"\x0a\x01j",
    b"\x32\x07" + _kv("k", b"\x40\x03"),
    b"\x32" + bytes([len(_kv("k", b"\x0a\x01v")) + 2]) + _kv("k", b"\x0a\x01v") + b"\x18\x02",
])
def test_unusual_wire_shapes_give_the_same_rows_or_go_to_the_existing_path(twins: Twins, record: bytes) -> None:
    data = _wrap_record(record)
    ExportLogsServiceRequest.FromString(data)  # valid protobuf, only unusual
    written = twins.fast.write(data)
    if written is None:
        assert twins.count("fast") == 0
        return
    twins.slow.write(decode_protobuf(data))
    assert twins.rows("fast") == twins.rows("slow")


def test_a_refused_request_writes_nothing_even_when_large(twins: Twins) -> None:
    """A wrong-length trace id in the last of 100,000 records: nothing written, the existing path says 400."""
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(100_000):
        records.add(time_unix_nano=1_764_000_000_000_000_000 + i, event_name="e")
    records[-1].trace_id = b"\x01" * 5
    data = request.SerializeToString()
    assert twins.fast.write(data) is None
    assert twins.count("fast") == 0
    with pytest.raises(IngestError, match="trace_id"):
        decode_protobuf(data)


def test_malformed_protobuf_is_refused(twins: Twins) -> None:
    with pytest.raises(IngestError, match="malformed protobuf"):
        twins.fast.write(b"\x0a\xff\xff")
    assert twins.fast.write(b"") == 0
    assert twins.count("fast") == 0


def test_large_request_and_the_materialized_view(twins: Twins) -> None:
    """A 20,000-record audit request: every row in otel_logs (as the existing path) and in audit_events."""
    now = time.time_ns()
    data = logs_request(({"time_unix_nano": now + i, "event_name": "prompt.update", "severity_number": 9,
                          "attributes": {"audit.event_id": uuid7ish(i), "audit.tenant_id": f"t{i % 3}",
                                         "enduser.id": "u@x.io", "audit.chain.seq": i}}
                         for i in range(20_000)), service="app").SerializeToString()
    assert twins.fast.write(data) == 20_000
    twins.slow.write(decode_protobuf(data))
    assert twins.rows("fast") == twins.rows("slow")
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, min_rows=1)  # into otel_logs, under the view
    assert writer is not None
    try:
        assert writer.write(data) == 20_000
        assert writer.write(logs_request([{"time_unix_nano": now}], scope=None).SerializeToString()) == 1  # not audit: no event
    finally:
        writer.close()
    assert twins.count("otel_logs") == 20_001
    assert twins.store.query("SELECT count(), uniqExact(tenant_id), max(chain_seq) FROM auditrail.audit_events "
                             "WHERE service_name = 'app'").result_rows == [(20_000, 3, 19_999)]


def _audit_request(first: int, count: int, trace_id: bytes = b"") -> bytes:
    """`count` audit records of ids first.. (the last one with `trace_id`), in one scope."""
    now = time.time_ns()
    request = logs_request(({"time_unix_nano": now + i, "event_name": "policy.update",
                             "attributes": {"audit.event_id": uuid7ish(i), "audit.tenant_id": f"t{i % 3}"}}
                            for i in range(first, first + count)), service=f"s{first}")
    request.resource_logs[0].scope_logs[0].log_records[-1].trace_id = trace_id
    return request.SerializeToString()


def _parts(store: Store, table: str) -> int:
    return int(store.query("SELECT count() FROM system.parts WHERE database = 'auditrail' AND table = {t:String} "
                           "AND active", {"t": table}).result_rows[0][0])


def _write_at_once(twins: Twins, requests: list[bytes], **options: int) -> list[int | None]:
    """Every request written at once (a thread each) through a one-handle writer into `fast` (the fixture's
    decoder); what each write returned."""
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, table="fast", handles=1, min_rows=1,
                                     native=twins.fast._native is not None, **options)
    assert writer is not None
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(writer.write, requests))
    finally:
        writer.close()


def _send_together(twins: Twins, group_requests: float | None = None) -> int:
    """Twelve 1,000-record requests sent at once to a one-handle writer into `fast` (merges stopped, so an insert
    is a part; `group_requests`: group_bytes as so many requests' bodies): each caller gets its count back and
    the rows are the existing path's. The parts made."""
    twins.store.command("SYSTEM STOP MERGES auditrail.fast")
    requests = [_audit_request(i * 1_000, 1_000) for i in range(12)]
    bound = {} if group_requests is None else {"group_bytes": int(len(requests[0]) * group_requests)}
    assert _write_at_once(twins, requests, **bound) == [1_000] * len(requests)
    for data in requests:
        twins.slow.write(decode_protobuf(data))
    assert twins.rows("fast") == twins.rows("slow")
    return _parts(twins.store, "fast")


def test_concurrent_requests_share_inserts(twins: Twins) -> None:
    """Requests that arrive together go in one insert (fewer parts than requests, merges stopped), each caller
    gets its own count back once its rows are written, and the rows are the existing path's."""
    assert _send_together(twins) < 12


def _write_beside_an_arrival(twins: Twins, group_wait: float, then: str) -> tuple[float, int]:
    """A request written while another is announced (FastLogWriter.arrive: its body being read) into `fast`,
    merges stopped; `then`: "write" the announced one 0.3 s later, or "leave" (it went away). (Seconds the first
    write took, parts made.)"""
    twins.store.command("SYSTEM STOP MERGES auditrail.fast")
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, table="fast", handles=1, min_rows=1,
                                     native=twins.fast._native is not None)
    assert writer is not None
    writer.group_wait = group_wait
    first, second = _audit_request(0, 1_000), _audit_request(1_000, 1_000)
    try:
        arrival = writer.arrive()
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            written = pool.submit(lambda: (writer.write(first), time.monotonic() - started))
            time.sleep(0.3)
            if then == "write":
                assert twins.count("fast") == 0, "the first request waits for the announced one"
                assert writer.write(second, arrival=arrival) == 1_000
            else:
                writer.leave(arrival)
            count, took = written.result()
        assert count == 1_000
    finally:
        writer.close()
    return took, _parts(twins.store, "fast")


def test_an_insert_about_to_start_alone_waits_for_a_request_arriving_beside_it(twins: Twins) -> None:
    """A burst's first request does not insert alone while the others' bodies are still arriving: it waits for
    them (at most group_wait) and they make one group, one part, as the next ones do."""
    took, parts = _write_beside_an_arrival(twins, group_wait=30.0, then="write")
    assert parts == 1 and took < 30
    assert twins.count("fast") == 2_000


def test_a_request_announced_and_gone_or_late_holds_no_insert_back(twins: Twins) -> None:
    """An announced request that leaves (413, 400, a client gone) releases the wait at once; one that never
    comes holds the first back for group_wait at most."""
    took, parts = _write_beside_an_arrival(twins, group_wait=30.0, then="leave")
    assert parts == 1 and 0.3 <= took < 10
    twins.store.command("TRUNCATE TABLE auditrail.fast")
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, table="fast", handles=1, min_rows=1,
                                     native=twins.fast._native is not None)
    assert writer is not None
    writer.group_wait = 0.2
    try:
        writer.arrive()  # never written, never left
        started = time.monotonic()
        assert writer.write(_audit_request(0, 1_000)) == 1_000
        assert 0.2 <= time.monotonic() - started < 10
    finally:
        writer.close()


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_the_service_announces_every_request_the_engine_path_may_take(tmp_path: Path, content_type: str) -> None:
    """A request of an all-tenant token is announced while its body arrives (an insert about to start alone
    waits for it, GROUP_WAIT), protobuf or OTLP/JSON (transcoded to protobuf, the JSON reaches the same path);
    a tenant token's never (its records are read on the existing path)."""
    from fastapi.testclient import TestClient
    from google.protobuf.json_format import MessageToJson

    from auditrail_store import admin
    from auditrail_store.service import create_app

    url = f"chdb://{tmp_path}/store"
    request = ExportLogsServiceRequest.FromString(_audit_request(0, 10))
    body = MessageToJson(request).encode() if content_type == "application/json" else request.SerializeToString()
    with TestClient(create_app(url, port=4999), client=("127.0.0.1", 40000)) as client:
        secret = json.loads(admin.control_path(url).read_text())["secret"]
        fast = client.app.state.auditrail_fast
        announced: list[Any] = []
        arrive = fast.arrive

        def counted() -> Any:
            announced.append(arrive())
            return announced[-1]

        fast.arrive = counted
        for tenant, expected in (("*", 1), ("t0", 0)):
            announced.clear()
            token = client.post("/v1/admin/tokens", headers={admin.LOCAL_ADMIN_HEADER: secret},
                                json={"tenant": tenant, "scope": "ingest"}).json()["token"]
            response = client.post("/v1/logs", content=body, headers={"Authorization": f"Bearer {token}",
                                                                       "Content-Type": content_type})
            assert response.status_code in (200, 403), response.text
            assert len(announced) == expected and all(arrival.left for arrival in announced)


def test_a_handles_file_is_rewritten_for_each_insert_and_holds_only_that_group(twins: Twins, tmp_path: Path) -> None:
    """Native inserts rewrite their handle's one file in place: a smaller group after a larger one reads its own
    blocks only (nothing of the earlier group's tail), the spool holds one file a handle, and close() removes it."""
    if twins.fast._native is None:
        pytest.skip("the engine-decoding statement writes a file an insert")
    spool = tmp_path / "spool"
    writer = FastLogWriter(twins.store.url.split("://", 1)[1], twins.store.database, twins.slow.columns,
                           table="fast", handles=1, min_rows=1, spool=str(spool))
    requests = [_audit_request(0, 3_000), _audit_request(3_000, 1_000), _audit_request(4_000, 2_000)]
    try:
        for data in requests:
            assert writer.write(data) == len(decode_protobuf(data))
            (file,) = [path for path in spool.rglob("*") if path.is_file()]
            assert file.stat().st_size == len(ingest_fast._native.otlp_logs_native(data)[1])
        for data in requests:
            twins.slow.write(decode_protobuf(data))
        assert twins.rows("fast") == twins.rows("slow")
    finally:
        writer.close()
    assert list(spool.iterdir()) == []


def test_a_group_holds_at_most_group_bytes_of_requests(twins: Twins) -> None:
    """The memory bound: with room for two and a half requests' bodies, no insert takes more than two, however
    many wait; every caller's rows are written all the same."""
    assert _send_together(twins, group_requests=2.5) >= 12 // 2


def test_a_full_group_starts_on_the_free_handle_beside_a_running_insert(twins: Twins) -> None:
    """Two handles, room for two and a half requests a group: while one insert runs, two requests queued are a
    full group (a third would not fit) and start on the other handle at once, not after the running insert
    (which made every insert wait for the one before it: one core used of two)."""
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, table="fast", handles=2, min_rows=1,
                                     native=twins.fast._native is not None)
    assert writer is not None
    requests = [_audit_request(i * 1_000, 1_000) for i in range(3)]
    native = ingest_fast._native if writer._native is not None else None
    size = max(len(native.otlp_logs_native(data)[1]) if native else len(data) for data in requests)
    writer.group_bytes = int(size * 2.5)
    started: list[int] = []
    second = threading.Event()
    beside: list[bool] = []
    insert = writer._insert

    def gated(connection: Any, group: list[Any]) -> bool:  # the engine's insert, the first held until a second starts
        started.append(len(group))
        if len(started) == 1:
            beside.append(second.wait(10))
        else:
            second.set()
        return insert(connection, group)

    writer._insert = gated  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(writer.write, requests[0])
            deadline = time.monotonic() + 30
            while not started and time.monotonic() < deadline:
                time.sleep(0.01)
            others = list(pool.map(writer.write, requests[1:]))
            assert first.result() == 1_000 and others == [1_000, 1_000]
        assert beside == [True], "the full group waited for the running insert"
        assert started == [1, 2]
    finally:
        writer.close()
    for data in requests:
        twins.slow.write(decode_protobuf(data))
    assert twins.rows("fast") == twins.rows("slow")


def test_a_refused_request_does_not_take_its_group_down(twins: Twins) -> None:
    """One request the engine refuses (a 5-byte trace id) among good ones sent at once: the good ones are
    written, that one is left to the existing path with nothing of it written, whatever group it fell in."""
    requests = [_audit_request(i * 1_000, 1_000) for i in range(8)]
    requests.insert(3, _audit_request(99_000, 1_000, trace_id=b"\x01" * 5))
    assert _write_at_once(twins, requests) == [1_000] * 3 + [None] + [1_000] * 5
    for data in requests[:3] + requests[4:]:
        twins.slow.write(decode_protobuf(data))
    assert twins.rows("fast") == twins.rows("slow")


def test_small_requests_are_left_to_the_existing_path(twins: Twins) -> None:
    writer = FastLogWriter.for_store(twins.store, twins.slow.columns, table="fast")  # the service's default
    assert writer is not None and writer.min_rows > 1
    try:
        assert writer.write(logs_request([{"time_unix_nano": 1}], scope=None).SerializeToString()) is None
    finally:
        writer.close()
    assert twins.count("fast") == 0


def test_the_service_takes_this_path_and_still_refuses_malformed_bodies(tmp_path: Path) -> None:
    """Through `auditrail serve`: a gzip'd 1,500-record request lands in otel_logs and audit_events; a body
    malformed after a valid prefix gets a 400 and writes nothing."""
    import gzip

    from test_store_service import cli, start_service, stop, token_of

    process, base, env = start_service(tmp_path)
    try:
        ingest = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest", env=env))
        now = time.time_ns()
        data = logs_request({"time_unix_nano": now + i, "event_name": "crawl.run",
                             "attributes": {"audit.event_id": uuid7ish(i), "audit.tenant_id": "acme"}}
                            for i in range(1_500)).SerializeToString()
        headers = {"Authorization": f"Bearer {ingest}", "Content-Type": "application/x-protobuf"}
        response = httpx.post(base + "/v1/logs", content=gzip.compress(data), timeout=60,
                              headers=dict(headers, **{"Content-Encoding": "gzip"}))
        assert response.status_code == 200, response.text
        response = httpx.post(base + "/v1/logs", content=data[:-3], headers=headers, timeout=60)
        assert response.status_code == 400
    finally:
        stop(process)
    with Store.open(f"chdb://{tmp_path}/store") as store:
        assert store.query("SELECT count() FROM auditrail.otel_logs").result_rows == [(1_500,)]
        assert store.query("SELECT count() FROM auditrail.audit_events").result_rows == [(1_500,)]


# The native core reads the protobuf with its own wire reader (native/src/lib.rs): the shapes below are the ones
# where a hand-written reader could part from upb's. Each is compared with the existing path (upb), or must be
# refused as upb refuses it.

def _scalar(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _any(*fields: bytes) -> bytes:
    return b"".join(fields)


def _pair(key: bytes, *value_fields: bytes) -> bytes:
    """A KeyValue with a raw key and the value given as that many AnyValue occurrences (merged)."""
    return _field(1, key) + b"".join(_field(2, value) for value in value_fields)


def _request(record: bytes = b"", resource: tuple[bytes, ...] = (), scope: tuple[bytes, ...] = (),
             resource_extra: bytes = b"", scope_extra: bytes = b"", request_extra: bytes = b"") -> bytes:
    """One ResourceLogs / ScopeLogs / LogRecord; resource and scope given as that many occurrences (merged)."""
    scope_logs = b"".join(_field(1, s) for s in scope) + _field(2, record) + scope_extra
    resource_logs = b"".join(_field(1, r) for r in resource) + _field(2, scope_logs) + resource_extra
    return _field(1, resource_logs) + request_extra


_S = lambda text: _field(1, text.encode())  # noqa: E731 - an AnyValue's string_value
_ARRAY = lambda *items: _field(5, b"".join(_field(1, item) for item in items))  # noqa: E731
_KVLIST = lambda *pairs: _field(6, b"".join(_field(1, pair) for pair in pairs))  # noqa: E731
_UNKNOWN = _scalar(99, 7) + _field(98, b"\xff\xfe") + b"\x8d\x06\x01\x02\x03\x04"  # varint, bytes (not UTF-8), fixed32

NATIVE_SHAPES = {
    "resource twice: attributes of both, service.name from the first pair": _request(
        b"\x62\x01e", resource=(_field(1, _pair(b"service.name", _S("a"))), _field(1, _pair(b"service.name", _S("b"))))),
    "scope twice: the last name, attributes of both": _request(
        b"\x62\x01e", scope=(_field(1, b"n1") + _field(2, b"v") + _field(3, _pair(b"z", _S("1"))),
                             _field(1, b"n2") + _field(3, _pair(b"a", _S("2"))))),
    "an attribute's value twice: arrays concatenated": _request(
        _field(6, _pair(b"k", _ARRAY(_S("a")), _ARRAY(_scalar(3, 5))))),
    "kvlist, then a string, then a kvlist: the first kvlist is gone": _request(
        _field(6, _pair(b"k", _KVLIST(_pair(b"x", _S("1"))), _S("s"), _KVLIST(_pair(b"y", _S("2")))))),
    "kvlists merged, a key repeated across them: the last wins": _request(
        _field(5, _KVLIST(_pair(b"b", _S("1")), _pair(b"a", _S("2"))) + _KVLIST(_pair(b"b", _S("3"))))),
    "a string, then string_value_strindex: empty": _request(_field(6, _pair(b"k", _S("v") + _scalar(8, 3)))),
    "strindex inside an array: null": _request(_field(5, _ARRAY(_scalar(8, 1), _S("x")))),
    "known numbers with another wire type are unknown fields": _request(
        _field(6, _pair(b"k", _scalar(1, 5) + _field(3, b"12") + _S("v"))) + _scalar(12, 1) + _field(8, b"1234")),
    "unknown fields at every level": _request(
        _field(6, _pair(b"k", _S("v") + _UNKNOWN) + _UNKNOWN) + _field(5, _ARRAY(_S("a") + _UNKNOWN) + _UNKNOWN)
        + _UNKNOWN, resource=(_field(1, _pair(b"r", _S("1"))) + _UNKNOWN,), scope=(_field(1, b"n") + _UNKNOWN,),
        resource_extra=_UNKNOWN, scope_extra=_UNKNOWN, request_extra=_UNKNOWN),
    "dropped counts, key_strindex, entity_refs": _request(
        _scalar(7, 3) + _field(6, _pair(b"k", _S("v")) + _scalar(3, 4)),
        resource=(_field(1, _pair(b"r", _S("1"))) + _scalar(2, 9)
                  + _field(3, _field(1, b"url") + _field(2, b"t") + _field(3, b"id") + _field(4, b"d")),),
        scope=(_field(1, b"n") + _scalar(4, 2),)),
    "negative ints as 10-byte varints, a bool of 2**63": _request(
        _scalar(2, -1) + _field(5, _scalar(3, -(1 << 63))) + _field(6, _pair(b"b", _scalar(2, 1 << 63)))
        + _field(6, _pair(b"i", _scalar(3, -1)))),
    "ids twice (the last wins), an all-zero id": _request(
        _field(9, b"\x01" * 5) + _field(9, b"\x02" * 16) + _field(10, b"\x00" * 8)),
    "non-ASCII keys and values, unsorted, a key repeated": _request(
        _field(6, _pair("ü".encode(), _S("é"))) + _field(6, _pair(b"a", _S("1"))) + _field(6, _pair(b"a", _S("0")))),
    "an empty array and an empty kvlist member": _request(
        _field(6, _pair(b"a", _field(5, b""))) + _field(6, _pair(b"k", _field(6, b"")))),
}


@pytest.mark.parametrize("shape", NATIVE_SHAPES)
def test_the_native_readers_merges_and_unknown_fields_give_upbs_rows(twins: Twins, shape: str) -> None:
    data = NATIVE_SHAPES[shape]
    ExportLogsServiceRequest.FromString(data)  # valid protobuf
    written = twins.both(data)
    if twins.fast._native is not None:
        assert written == 1, shape
    assert twins.rows("fast") == twins.rows("slow"), shape


REFUSED_SHAPES = {
    "invalid UTF-8 in a string a later member replaces": _request(_field(5, _field(1, b"\xff") + _scalar(3, 1))),
    "invalid UTF-8 in a key": _request(_field(6, _pair(b"\xc3", _S("v")))),
    "invalid UTF-8 deep in an array": _request(_field(5, _ARRAY(_ARRAY(_field(1, b"\xed\xa0\x80"))))),
    "invalid UTF-8 in an entity_ref": _request(b"", resource=(_field(3, _field(3, b"\x80")),)),
    "invalid UTF-8 in the severity text": _request(_field(3, b"\xfe")),
    "a truncated attribute": _request(_field(6, _pair(b"k", _S("v"))[:-1])),
    "a length beyond the body": _request()[:-1] + b"\x0a\x05ab",
    "field number 0": _request(b"\x00\x01"),
}


@pytest.mark.parametrize("shape", REFUSED_SHAPES)
def test_what_upb_refuses_the_native_reader_refuses(twins: Twins, shape: str) -> None:
    data = REFUSED_SHAPES[shape]
    with pytest.raises(IngestError, match="malformed protobuf"):
        decode_protobuf(data)
    with pytest.raises(IngestError, match="malformed protobuf"):
        twins.fast.write(data)
    assert twins.count("fast") == 0


def test_what_the_native_reader_leaves_to_upb_goes_to_the_existing_path(twins: Twins) -> None:
    """A group (wire types 3/4) in an unknown field, values nested deeper than the native reader goes: upb reads
    them, so the existing path writes them."""
    nested = _S("leaf")
    for _ in range(40):  # 80 message levels: within upb's limit (100), beyond the native reader's (64)
        nested = _ARRAY(nested)
    for data in (_request(b"\x62\x01e\x9b\x06\x08\x01\x9c\x06"), _request(_field(5, nested))):
        ExportLogsServiceRequest.FromString(data)
        if twins.fast._native is not None:
            assert twins.fast.write(data) is None
        assert twins.count("fast") == 0


def test_the_native_reader_knows_every_field_upb_knows() -> None:
    """The native reader skips fields it does not know without checking them; upb checks the UTF-8 of every
    string field it knows. So every field of the installed descriptors must be one the reader handles (a new
    field in opentelemetry-proto makes this fail: native/src/lib.rs must learn it)."""
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    known = {  # message: field numbers native/src/lib.rs reads (or skips knowing they hold no string)
        "ExportLogsServiceRequest": {1}, "ResourceLogs": {1, 2, 3}, "ScopeLogs": {1, 2, 3},
        "LogRecord": {1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12}, "Resource": {1, 2, 3}, "EntityRef": {1, 2, 3, 4},
        "InstrumentationScope": {1, 2, 3, 4}, "AnyValue": {1, 2, 3, 4, 5, 6, 7, 8}, "ArrayValue": {1},
        "KeyValueList": {1}, "KeyValue": {1, 2, 3},
    }
    descriptors = {name: d for module in (common_pb2, resource_pb2, logs_pb2)
                   for name, d in module.DESCRIPTOR.message_types_by_name.items()}
    descriptors["ExportLogsServiceRequest"] = ExportLogsServiceRequest.DESCRIPTOR
    for message, numbers in known.items():
        assert {field.number for field in descriptors[message].fields} == numbers, message


def _native_columns(block: bytes) -> dict[str, list[Any]]:
    """A Native block of the native core's column types read back: column name -> values (maps as pair lists)."""
    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = block[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, at

    def text(at: int) -> tuple[str, int]:
        size, at = varint(at)
        return block[at:at + size].decode(), at + size

    columns, at = varint(0)
    rows, at = varint(at)
    out: dict[str, list[Any]] = {}
    for _ in range(columns):
        name, at = text(at)
        kind, at = text(at)
        values: list[Any] = []
        if kind == "DateTime64(9)":
            values = [int.from_bytes(block[at + 8 * i:at + 8 * i + 8], "little", signed=True) for i in range(rows)]
            at += 8 * rows
        elif kind == "UInt8":
            values, at = list(block[at:at + rows]), at + rows
        elif kind == "String":
            for _ in range(rows):
                value, at = text(at)
                values.append(value)
        else:  # Map(String, String): offsets, keys, values
            ends = [int.from_bytes(block[at + 8 * i:at + 8 * i + 8], "little") for i in range(rows)]
            at += 8 * rows
            flat: list[list[str]] = [[], []]
            for part in flat:
                for _ in range(ends[-1] if ends else 0):
                    value, at = text(at)
                    part.append(value)
            values = [list(zip(flat[0][start:end], flat[1][start:end], strict=True))
                      for start, end in zip([0, *ends], ends, strict=False)]
        out[name] = values
    assert at == len(block)
    return out


def test_mutated_requests_native_rows_equal_the_python_paths_or_upb_decides() -> None:
    """Random requests (every AnyValue kind) and byte mutations of them, without the engine: the native core
    never takes a body upb refuses, and what it takes has exactly the Python path's rows, column by column."""
    if ingest_fast._native is None:
        pytest.skip("the native core is not built")
    native = ingest_fast._native
    rng = random.Random(11)
    seeds = [test_store_ingest._random_request(rng).SerializeToString() for _ in range(100)]
    taken = 0
    for _ in range(4_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            at, operation = rng.randrange(len(data)), rng.random()
            if operation < 0.5:
                data[at] = rng.randrange(256)
            elif operation < 0.7:
                data[at:at] = bytes([rng.randrange(256)])
            elif operation < 0.85:
                del data[at]
            else:
                del data[at:]
            if not data:
                break
        body = bytes(data)
        try:
            encoded = native.otlp_logs_native(body)
        except ValueError:
            continue  # upb decides (test_malformed_protobuf_is_refused, test_what_upb_refuses_...)
        ExportLogsServiceRequest.FromString(body)  # what the native core takes, upb takes
        if encoded is None:
            with pytest.raises(IngestError):
                decode_protobuf(body)
            continue
        rows, block = encoded
        batch = decode_protobuf(body)
        assert rows == len(batch)
        got = _native_columns(block)
        for name, values in batch.columns().items():
            if name.endswith("Attributes"):
                values = [list(m.items()) if isinstance(m, dict) else [tuple(p) for p in m] for m in values]
            assert got[name] == list(values), name
        taken += 1
    assert taken > 1_000


def test_a_native_block_writes_the_bytes_of_the_encoding_and_again_for_a_retry(tmp_path: Path) -> None:
    """The fast path keeps a request's block in the core's buffers and writes it into the group's file from
    there (no 4 MB bytes copy a request): the file holds exactly the block otlp_logs_native returns, twice
    when written twice (a group retried request by request writes it again), and len() is its size."""
    if ingest_fast._native is None:
        pytest.skip("the native core is not built")
    data = _audit_request(0, 1_500)
    rows, expected = ingest_fast._native.otlp_logs_native(data)
    held = ingest_fast._native.otlp_logs_block(data)
    assert (held.rows, len(held)) == (rows, len(expected)) == (1_500, len(expected))
    path = tmp_path / "group.native"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(descriptor, b"before")
        held.write_to(descriptor)
        held.write_to(descriptor)
    finally:
        os.close(descriptor)
    assert path.read_bytes() == b"before" + expected + expected
    assert ingest_fast._native.otlp_logs_block(data, 1_499) == "limit"


def test_native_doubles_format_as_the_python_path() -> None:
    """Doubles as pdata formats them (the Python path: repr's digits), including the ones exactly halfway
    between two shortest candidates (float32 values widened, e.g. 3.25043487548828125: ...2812, not ...2813)."""
    if ingest_fast._native is None:
        pytest.skip("the native core is not built")
    import struct

    rng = random.Random(12)
    doubles = [3.25043487548828125, 0.1, 1e21, 1e-7, 123456789012345678e10, 5e-324, -2.5e-7, 1.7976931348623157e308]
    doubles += [struct.unpack("<f", rng.randbytes(4))[0] for _ in range(3_000)]
    doubles += [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3_000)]
    doubles = [d for d in doubles if math.isfinite(d)]
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for value in doubles:
        record = records.add()
        record.body.double_value = value
        record.attributes.add(key="a").value.array_value.values.add().double_value = value
    data = request.SerializeToString()
    rows, block = ingest_fast._native.otlp_logs_native(data)
    batch = decode_protobuf(data)
    got = _native_columns(block)
    assert got["Body"] == batch.bodies
    assert got["LogAttributes"] == [list(m.items()) for m in batch.log_attributes]
    assert "3.2504348754882812" in got["Body"]
