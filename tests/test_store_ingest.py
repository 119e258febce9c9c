"""OTLP logs -> otel_logs rows, as the collector's clickhouse exporter (contrib v0.161.0) writes them.

The expected strings of tests/data/pdata_asstring_vectors.json were produced by pdata v1.67.0 itself (the
version the v0.161.0 collector builds with); the rest pins exporter_logs.go's mapping field by field and
proves the fast protobuf walker equal to the plain reading of the upb objects on randomized requests.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from auditrail.exporters.otlp_json import request_to_collector_json
from otlp_requests import length_delimited as _field
from auditrail_store.ingest import (
    JSON,
    PROTOBUF,
    IngestError,
    LogBatch,
    content_kind,
    decode_json,
    decode_protobuf,
    decode_request,
    encode_json_columns,
    go_float,
    media_type,
    protobuf_slices,
    rows_from_message,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "pdata_asstring_vectors.json").read_text())


@pytest.mark.parametrize(("header", "kind"), [
    ("application/x-protobuf", PROTOBUF), ("Application/Protobuf; proto=opentelemetry", PROTOBUF),
    (" application/json ; charset=utf-8", JSON), ("text/plain", "text/plain"), (None, ""),
])
def test_a_content_type_names_one_kind_and_only_otlp_kinds_are_taken(header: str | None, kind: str) -> None:
    """One reading of Content-Type for the service's branch (content_kind) and the decoder's (media_type)."""
    assert content_kind(header) == kind
    if kind in (PROTOBUF, JSON):
        assert media_type(header) == kind
    else:
        with pytest.raises(IngestError, match="unsupported Content-Type"):
            media_type(header)


def test_anyvalue_as_string_matches_pdata_for_protobuf_requests() -> None:
    batch = decode_protobuf(base64.b64decode(VECTORS["request_protobuf_base64"]))
    for row, vector in zip(batch.rows(), VECTORS["vectors"], strict=True):
        assert row["Body"] == vector["as_string"], vector["name"]
        assert row["LogAttributes"]["v"] == vector["as_string"], vector["name"]
        assert row["ServiceName"] == "vectors"


def test_anyvalue_as_string_matches_pdata_for_json_requests() -> None:
    batch = decode_json(VECTORS["request_json"].encode())
    for row, vector in zip(batch.rows(), VECTORS["vectors"], strict=True):
        if vector["name"] == "double:-0":
            continue  # JSON "-0" parses as the integer 0 here (orjson, like every Python JSON parser)
        assert row["Body"] == vector["as_string"], vector["name"]
        assert row["LogAttributes"]["v"] == vector["as_string"], vector["name"]


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def test_exporter_mapping_field_by_field() -> None:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add(schema_url="https://opentelemetry.io/schemas/1.27.0")
    resource_logs.resource.attributes.extend([_kv("service.name", int_value=42), _kv("host", string_value="h1")])
    scope_logs = resource_logs.scope_logs.add(schema_url="scope-url")
    scope_logs.scope.name = "auditrail"
    scope_logs.scope.version = "0.1.0"
    scope_logs.scope.attributes.append(_kv("s", bool_value=True))
    record = scope_logs.log_records.add(
        time_unix_nano=0, observed_time_unix_nano=1_764_000_000_123_456_789, severity_number=13,
        severity_text="WARN", flags=0x1FF, trace_id=bytes(range(16)), span_id=bytes(8), event_name="prompt.update")
    record.body.string_value = "prompt.update by alice"
    record.attributes.extend([_kv("audit.event_id", string_value="e1"), _kv("audit.chain.seq", int_value=7),
                              _kv("x", double_value=0.1)])
    rows = decode_protobuf(request.SerializeToString()).rows()
    assert rows == [{
        "Timestamp": 1_764_000_000_123_456_789,  # Timestamp 0 falls back to ObservedTimestamp
        "TraceId": "000102030405060708090a0b0c0d0e0f", "SpanId": "",  # all-zero id: empty string
        "TraceFlags": 0xFF, "SeverityText": "WARN", "SeverityNumber": 13, "ServiceName": "42",
        "Body": "prompt.update by alice", "ResourceSchemaUrl": "https://opentelemetry.io/schemas/1.27.0",
        "ResourceAttributes": {"host": "h1", "service.name": "42"}, "ScopeSchemaUrl": "scope-url",
        "ScopeName": "auditrail", "ScopeVersion": "0.1.0", "ScopeAttributes": {"s": "true"},
        "LogAttributes": {"audit.chain.seq": "7", "audit.event_id": "e1", "x": "0.1"}, "EventName": "prompt.update",
    }]
    assert list(rows[0]["LogAttributes"]) == ["audit.chain.seq", "audit.event_id", "x"]  # sorted, as clickhouse-go
    assert decode_json(request_to_collector_json(request).encode()).rows() == rows


def test_repeated_attribute_keys_are_all_kept_sorted_by_key() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.attributes.extend([_kv("k", string_value="1"), _kv("a", string_value="0"), _kv("k", string_value="2")])
    (row,) = decode_protobuf(request.SerializeToString()).rows()
    assert row["LogAttributes"] == [("a", "0"), ("k", "1"), ("k", "2")]
    assert b'"LogAttributes":[{"a":"0","k":"1","k":"2"}]' in encode_json_columns(decode_protobuf(request.SerializeToString()),
                                                                         ["LogAttributes"])


def _random_value(rng: random.Random, depth: int = 0) -> AnyValue:
    kind = rng.choice(["s", "s", "s", "b", "i", "d", "bytes", "empty"] + (["arr", "kv"] if depth < 2 else []))
    if kind == "s":
        return AnyValue(string_value=rng.choice(["", "x", "é<&>\u2028", "long" * rng.randint(0, 60)]))
    if kind == "b":
        return AnyValue(bool_value=rng.random() < 0.5)
    if kind == "i":
        return AnyValue(int_value=rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randint(-1000, 1000)]))
    if kind == "d":
        return AnyValue(double_value=rng.choice([0.0, -0.0, 0.1, 1e21, 1e-7, float("nan"), float("inf"), 3.25]))
    if kind == "bytes":
        return AnyValue(bytes_value=rng.randbytes(rng.randint(0, 5)))
    if kind == "empty":
        return AnyValue()
    value = AnyValue()
    if kind == "arr":
        value.array_value.values.extend(_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    else:
        value.kvlist_value.values.extend(KeyValue(key=f"k{i % 2}", value=_random_value(rng, depth + 1))
                                         for i in range(rng.randint(0, 3)))
    return value


def _random_request(rng: random.Random) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(rng.randint(1, 3)):
        resource_logs = request.resource_logs.add(schema_url=rng.choice(["", "r"]))
        for i in range(rng.randint(0, 3)):
            resource_logs.resource.attributes.append(KeyValue(key=rng.choice(["service.name", f"r{i}"]),
                                                              value=_random_value(rng)))
        for _ in range(rng.randint(1, 3)):
            scope_logs = resource_logs.scope_logs.add(schema_url=rng.choice(["", "s"]))
            scope_logs.scope.name = rng.choice(["", "auditrail"])
            for _ in range(rng.randint(0, 6)):
                record = scope_logs.log_records.add(
                    time_unix_nano=rng.choice([0, rng.randint(1, 2**64 - 1)]),
                    observed_time_unix_nano=rng.randint(0, 2**63), severity_number=rng.randint(0, 24),
                    severity_text=rng.choice(["", "INFO"]), flags=rng.randint(0, 2**32 - 1),
                    trace_id=rng.choice([b"", rng.randbytes(16), bytes(16)]),
                    span_id=rng.choice([b"", rng.randbytes(8)]), event_name=rng.choice(["", "prompt.update"]))
                if rng.random() < 0.8:
                    record.body.CopyFrom(_random_value(rng))
                for i in range(rng.randint(0, 8)):
                    record.attributes.append(KeyValue(key=rng.choice([f"a{i}", "dup", "x" * 200]),
                                                      value=_random_value(rng)))
    return request


def test_fast_walker_equals_the_upb_reading_on_random_requests() -> None:
    rng = random.Random(4)
    for _ in range(300):
        request = _random_request(rng)
        assert decode_protobuf(request.SerializeToString()).rows() == rows_from_message(request).rows()


def _upb_reading(body: bytes) -> list[dict] | str:
    """What the service did before slices: upb reads the whole request, then its rows (or the refusal)."""
    try:
        return rows_from_message(ExportLogsServiceRequest.FromString(body)).rows()
    except (DecodeError, IngestError):
        return "refused"


def _sliced_reading(body: bytes, slice_bytes: int) -> list[dict] | str:
    batch = LogBatch()
    try:
        for part in protobuf_slices(body, slice_bytes):
            batch.extend(part)
    except IngestError:
        return "refused"
    return batch.rows()


def test_slices_accept_and_refuse_what_upb_does_on_mutated_requests() -> None:
    """The request read in slices (skeleton, then records a slice at a time) gives the rows upb's reading of
    the whole gives, and refuses exactly the bodies upb refuses: mutated bytes, merged and repeated fields,
    nesting at upb's depth limit (a record read alone may nest deeper)."""
    rng = random.Random(15)
    bodies = []
    for _ in range(150):
        clean = _random_request(rng).SerializeToString()
        bodies.append(clean)
        for _ in range(4):
            body = bytearray(clean)
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            bodies.append(bytes(body))
        bodies.append(clean + clean[: rng.randrange(len(clean) + 1)])  # a second, perhaps truncated, copy
    for depth in (46, 47, 48, 49, 50):  # arrays nested in a record's body around upb's nesting limit (48 here)
        value = _field(1, b"x")  # AnyValue{string_value}
        for _ in range(depth):
            value = _field(5, _field(1, value))  # AnyValue{array_value: ArrayValue{values: [value]}}
        bodies.append(_field(1, _field(2, _field(2, _field(5, value)))))  # as a record's body
    refused = 0
    for body in bodies:
        expected = _upb_reading(body)
        refused += expected == "refused"
        for slice_bytes in (1, 300, 1 << 20):
            assert _sliced_reading(body, slice_bytes) == expected, (body, slice_bytes)
    assert 50 < refused < len(bodies) - 150  # both kinds were exercised


@pytest.mark.parametrize("body, content_type, encoding, message", [
    (b"\x0a\xff\xff", "application/x-protobuf", None, "malformed protobuf"),
    (b'{"resourceLogs": [', "application/json", None, "malformed JSON"),
    (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": true}]}]}]}', "application/json", None,
     "timeUnixNano"),
    (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "abcd"}]}]}]}', "application/json", None,
     "traceId"),
    (b'{"resourceLogs": {}}', "application/json", None, "expected an array"),
    (b"not gzip", "application/json", "gzip", "gzip"),
    (b"{}", "text/plain", None, "Content-Type"),
    (b"{}", "application/json", "br", "Content-Encoding"),
])
def test_malformed_requests_are_refused_with_a_reason(body: bytes, content_type: str, encoding: str | None,
                                                       message: str) -> None:
    with pytest.raises(IngestError, match=message):
        decode_request(body, content_type, encoding)


def test_trace_id_of_wrong_length_is_refused() -> None:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(trace_id=b"\x01" * 5)
    with pytest.raises(IngestError, match="trace_id"):
        decode_protobuf(request.SerializeToString())


def test_gzip_and_size_limit() -> None:
    payload = request_to_collector_json(_random_request(random.Random(1))).encode()
    assert decode_request(gzip.compress(payload), "application/json", "gzip").rows() == decode_json(payload).rows()
    with pytest.raises(IngestError, match="larger than"):
        decode_request(gzip.compress(b" " * 5000), "application/json", "gzip", max_bytes=1000)


def test_go_float_formats_like_go() -> None:
    assert [go_float(x) for x in (1e20, 1e21, 1e-7, 123.0, float("nan"))] == [
        "100000000000000000000", "1e+21", "1e-7", "123", "NaN"]
