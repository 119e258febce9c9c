"""The OTLP/JSON-lines file exporter, its reader and ``auditrail show``, driven through the real OTel SDK."""

from __future__ import annotations

import base64
import enum
import json
import logging
import os
import random
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    format_span_id,
    format_trace_id,
    set_span_in_context,
)
from rich.console import Console

from auditrail import semconv
from auditrail.exporters.otlp_json import (
    OTLPJsonLinesExporter,
    logs_to_collector_json,
    read_records,
    request_to_collector_json,
)
from auditrail.show import format_time, main_show, render_table

T0 = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z

PLAN_CHANGE_ATTRIBUTES: dict[str, Any] = {
    semconv.EVENT_ID: "01941f2e-7a00-7000-8000-000000000001",
    semconv.TENANT: "acme",
    semconv.ACTOR: "ops@example.com",
    semconv.IMPERSONATOR: "admin@example.com",
    semconv.SOURCE_IP: "203.0.113.7",
    semconv.OUTCOME: "success",
    semconv.RISK: "high",
    semconv.PAYLOAD: json.dumps({"before": {"plan": "free"}, "after": {"plan": "pro"}}),
    semconv.CHAIN_SEQ: 42,
    "audit.approved": True,
    "audit.ratio": 0.25,
    "audit.tags": ["billing", "manual"],
    "audit.counts": [1, 2, 3],
}


@dataclass
class Emitted:
    """What one test run sent through the SDK: the file, the SDK's own copy of each record, the span."""

    path: Path
    records: list[ReadableLogRecord]
    span: SpanContext


def _provider(path: Path) -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    """A LoggerProvider writing to ``path`` and, for comparison, to memory."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing-api"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPJsonLinesExporter(path)))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    return provider, memory


@pytest.fixture
def emitted(tmp_path: Path) -> Iterator[Emitted]:
    """Two audit records emitted inside a span and one ordinary app log outside it."""
    path = tmp_path / "spool" / "x.jsonl"
    provider, memory = _provider(path)
    audit = provider.get_logger(semconv.SCOPE_NAME, "0.1.0")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("change-plan") as span:
        audit.emit(
            event_name="billing.plan.change",
            timestamp=T0,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes=PLAN_CHANGE_ATTRIBUTES,
        )
        audit.emit(
            event_name="crawl.run",
            timestamp=T0 + 1_000_000_000,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body={"pages": 42, "note": "nightly"},
            attributes={
                semconv.EVENT_ID: "01941f2e-7a00-7000-8000-000000000002",
                semconv.TENANT: "globex",
                semconv.ACTOR: "scheduler",
                semconv.OUTCOME: "failure",
                semconv.RISK: "low",
                semconv.PAYLOAD: json.dumps({"domain": "docs.acme.io", "pages": 42}),
            },
        )
    provider.get_logger("myapp.http").emit(body="GET /health 200", severity_number=SeverityNumber.INFO)
    yield Emitted(path, list(memory.get_finished_logs()), span.get_span_context())
    provider.shutdown()


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), "every export ends its line"
    return text.splitlines()


def _only_record(request: dict[str, Any]) -> dict[str, Any]:
    (resource_logs,) = request["resourceLogs"]
    (scope_logs,) = resource_logs["scopeLogs"]
    (record,) = scope_logs["logRecords"]
    return record


def _hex_ids_to_base64(node: Any) -> Any:
    """Turn pdata's hex ids back into the protobuf JSON mapping's base64 so json_format can parse them."""
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode() if key in ("traceId", "spanId") else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


# --------------------------------------------------------------------------------------------------
# Writing


def test_file_exporter_writes_one_collector_style_request_per_line(emitted: Emitted) -> None:
    lines = _lines(emitted.path)
    assert len(lines) == 3  # SimpleLogRecordProcessor exports each record as its own batch
    requests = [json.loads(line) for line in lines]
    scopes = [request["resourceLogs"][0]["scopeLogs"][0]["scope"] for request in requests]
    assert scopes == [
        {"name": "auditrail", "version": "0.1.0"},
        {"name": "auditrail", "version": "0.1.0"},
        {"name": "myapp.http"},
    ]
    resource = {kv["key"]: kv["value"] for kv in requests[0]["resourceLogs"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "billing-api"}
    assert all(" " not in line.split('"stringValue"')[0] for line in lines), "compact separators, like pdata"


def test_log_record_uses_collector_json_encoding(emitted: Emitted) -> None:
    record = _only_record(json.loads(_lines(emitted.path)[0]))

    # Field order is the .proto declaration order pdata writes (observedTimeUnixNano right after timeUnixNano),
    # and the empty body is written as {} the way pdata always writes it.
    assert list(record) == [
        "timeUnixNano",
        "observedTimeUnixNano",
        "severityNumber",
        "severityText",
        "body",
        "attributes",
        "flags",
        "traceId",
        "spanId",
        "eventName",
    ]
    assert record["timeUnixNano"] == str(T0)
    assert re.fullmatch(r"[0-9]{19}", record["observedTimeUnixNano"])
    assert record["severityNumber"] == 13 and record["severityText"] == "WARN"
    assert record["body"] == {}
    # W3C trace flags of the span: sampled (0x01), plus "random" (0x02) that SDK 1.45 sets on new trace ids.
    assert record["flags"] == int(emitted.span.trace_flags) and record["flags"] & 0x01
    assert record["traceId"] == format_trace_id(emitted.span.trace_id)
    assert re.fullmatch(r"[0-9a-f]{32}", record["traceId"])
    assert record["spanId"] == format_span_id(emitted.span.span_id)
    assert re.fullmatch(r"[0-9a-f]{16}", record["spanId"])
    assert record["eventName"] == "billing.plan.change"

    attributes = {kv["key"]: kv["value"] for kv in record["attributes"]}
    assert record["attributes"][0] == {"key": semconv.EVENT_ID, "value": {"stringValue": PLAN_CHANGE_ATTRIBUTES[semconv.EVENT_ID]}}
    assert attributes[semconv.TENANT] == {"stringValue": "acme"}
    assert attributes[semconv.CHAIN_SEQ] == {"intValue": "42"}
    assert attributes["audit.approved"] == {"boolValue": True}
    assert attributes["audit.ratio"] == {"doubleValue": 0.25}
    assert attributes["audit.tags"] == {"arrayValue": {"values": [{"stringValue": "billing"}, {"stringValue": "manual"}]}}
    assert attributes["audit.counts"] == {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}, {"intValue": "3"}]}}


def test_record_outside_a_span_has_no_trace_or_span_id(emitted: Emitted) -> None:
    record = _only_record(json.loads(_lines(emitted.path)[2]))
    assert "traceId" not in record and "spanId" not in record and "flags" not in record
    assert "timeUnixNano" not in record, "the SDK leaves time unset when the caller gives none"
    assert record["body"] == {"stringValue": "GET /health 200"}


def test_each_line_is_the_request_the_otlp_exporters_would_send(emitted: Emitted) -> None:
    lines = _lines(emitted.path)
    assert len(lines) == len(emitted.records)
    for line, sdk_record in zip(lines, emitted.records, strict=True):
        parsed = json_format.Parse(json.dumps(_hex_ids_to_base64(json.loads(line))), ExportLogsServiceRequest())
        assert parsed == encode_logs([sdk_record])


# The expected lines in the byte-for-byte tests were checked with go.opentelemetry.io/collector/pdata v1.71.0:
# plog.JSONUnmarshaler then plog.JSONMarshaler (the marshaler behind the collector's file exporter) gives
# back exactly these bytes.


def test_line_with_go_specific_spellings_matches_collector_marshaler_byte_for_byte() -> None:
    # 1.0 -> 1, 5e-05 -> 0.00005, \b -> \u0008: the cases where Python's json module would differ from Go.
    context = set_span_in_context(
        NonRecordingSpan(
            SpanContext(0x0102030405060708090A0B0C0D0E0F10, 0x1112131415161718, is_remote=False, trace_flags=TraceFlags(1))
        )
    )
    record = ReadableLogRecord(
        log_record=LogRecord(
            timestamp=T0,
            observed_timestamp=1_767_225_600_200_000_000,
            context=context,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            event_name="billing.plan.change",
            attributes={
                "audit.tenant_id": "acme",
                "audit.chain.seq": 7,
                "ratio": 1.0,
                "tiny": 5e-05,
                "huge": 1e21,
                "flag": False,
                "note": "tab\there\bé",
                "digest": b"\x00\xff",
                "tags": ["a", "b"],
            },
        ),
        resource=Resource({"service.name": "billing"}),
        instrumentation_scope=InstrumentationScope("auditrail", "0.1.0"),
    )
    expected = (
        '{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}}]},'
        '"scopeLogs":[{"scope":{"name":"auditrail","version":"0.1.0"},"logRecords":[{'
        '"timeUnixNano":"1767225600123456789","observedTimeUnixNano":"1767225600200000000",'
        '"severityNumber":13,"severityText":"WARN","body":{},"attributes":['
        '{"key":"audit.tenant_id","value":{"stringValue":"acme"}},'
        '{"key":"audit.chain.seq","value":{"intValue":"7"}},'
        '{"key":"ratio","value":{"doubleValue":1}},'
        '{"key":"tiny","value":{"doubleValue":0.00005}},'
        '{"key":"huge","value":{"doubleValue":1e+21}},'
        '{"key":"flag","value":{"boolValue":false}},'
        '{"key":"note","value":{"stringValue":"tab\\there\\u0008é"}},'
        '{"key":"digest","value":{"bytesValue":"AP8="}},'
        '{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"stringValue":"b"}]}}}],'
        '"flags":1,"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718",'
        '"eventName":"billing.plan.change"}]}]}]}'
    )
    assert request_to_collector_json(encode_logs([record])) == expected
    assert logs_to_collector_json([record]) == expected.encode()


def test_plain_line_matches_collector_marshaler_byte_for_byte() -> None:
    record = ReadableLogRecord(
        log_record=LogRecord(
            timestamp=T0,
            observed_timestamp=1_767_225_600_200_000_000,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            event_name="crawl.run",
            body={"pages": 42, "ratio": 0.5, "whole": 3.0, "ok": True, "msg": 'say "hi"\n\tok <&> é'},
            attributes={"audit.tenant_id": "*", "count": -3, "scores": [1.5, 2.0]},
        ),
        resource=Resource({"service.name": "crawler"}, schema_url="https://opentelemetry.io/schemas/1.26.0"),
        instrumentation_scope=InstrumentationScope("auditrail", None, None, {"scope.attr": "x"}),
    )
    expected = (
        '{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"crawler"}}]},'
        '"scopeLogs":[{"scope":{"name":"auditrail","attributes":[{"key":"scope.attr","value":{"stringValue":"x"}}]},'
        '"logRecords":[{"timeUnixNano":"1767225600123456789","observedTimeUnixNano":"1767225600200000000",'
        '"severityNumber":9,"severityText":"INFO","body":{"kvlistValue":{"values":['
        '{"key":"pages","value":{"intValue":"42"}},{"key":"ratio","value":{"doubleValue":0.5}},'
        '{"key":"whole","value":{"doubleValue":3}},{"key":"ok","value":{"boolValue":true}},'
        '{"key":"msg","value":{"stringValue":"say \\"hi\\"\\n\\tok <&> é"}}]}},"attributes":['
        '{"key":"audit.tenant_id","value":{"stringValue":"*"}},{"key":"count","value":{"intValue":"-3"}},'
        '{"key":"scores","value":{"arrayValue":{"values":[{"doubleValue":1.5},{"doubleValue":2}]}}}],'
        '"eventName":"crawl.run"}]}],"schemaUrl":"https://opentelemetry.io/schemas/1.26.0"}]}'
    )
    assert request_to_collector_json(encode_logs([record])) == expected
    assert logs_to_collector_json([record]) == expected.encode()


def test_empty_messages_and_zero_ids_are_written_as_pdata_writes_them() -> None:
    # pdata always writes resource, scope, body and value (even as {}) and leaves out an all-zero traceId;
    # checked against plog.JSONMarshaler like the tests above.
    request = ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        log_records=[
                            logs_pb2.LogRecord(time_unix_nano=1, attributes=[KeyValue(key="k")], trace_id=bytes(16))
                        ]
                    )
                ]
            )
        ]
    )
    assert request_to_collector_json(request) == (
        '{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{},"logRecords":'
        '[{"timeUnixNano":"1","body":{},"attributes":[{"key":"k","value":{}}]}]}]}]}'
    )


def test_records_of_one_batch_are_grouped_by_resource_and_scope(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    app, billing = Resource({"service.name": "app"}), Resource({"service.name": "billing"})
    audit_scope, http_scope = InstrumentationScope("auditrail", "1"), InstrumentationScope("http")
    batch = [
        ReadableLogRecord(LogRecord(timestamp=T0 + i, body=str(i)), resource, scope)
        for i, (resource, scope) in enumerate(
            [(app, audit_scope), (app, http_scope), (app, audit_scope), (billing, audit_scope)]
        )
    ]
    exporter = OTLPJsonLinesExporter(path)
    assert exporter.export(batch) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    (line,) = _lines(path)
    grouped = {
        (rl["resource"]["attributes"][0]["value"]["stringValue"], sl["scope"]["name"]): [
            r["body"]["stringValue"] for r in sl["logRecords"]
        ]
        for rl in json.loads(line)["resourceLogs"]
        for sl in rl["scopeLogs"]
    }
    assert grouped == {("app", "auditrail"): ["0", "2"], ("app", "http"): ["1"], ("billing", "auditrail"): ["3"]}


def test_unwritable_path_returns_failure_instead_of_raising(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    exporter = OTLPJsonLinesExporter(blocker / "audit.jsonl")
    record = ReadableLogRecord(LogRecord(timestamp=T0, body="x"), Resource({}), InstrumentationScope("auditrail"))
    assert exporter.export([record]) is LogRecordExportResult.FAILURE
    assert "cannot write" in caplog.text


def test_export_after_shutdown_fails_and_flush_succeeds(tmp_path: Path) -> None:
    exporter = OTLPJsonLinesExporter(tmp_path / "x.jsonl")
    record = ReadableLogRecord(LogRecord(timestamp=T0, body="x"), Resource({}), InstrumentationScope("auditrail"))
    assert exporter.export([record]) is LogRecordExportResult.SUCCESS
    assert exporter.force_flush() is True
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    assert exporter.export([record]) is LogRecordExportResult.FAILURE
    assert len(_lines(tmp_path / "x.jsonl")) == 1


def test_concurrent_exports_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    provider, _ = _provider(path)
    logger = provider.get_logger(semconv.SCOPE_NAME)
    big = "x" * 20_000  # larger than the write buffer, so a line goes out in one large write

    def emit_many(worker: int) -> None:
        for i in range(50):
            logger.emit(event_name="crawl.run", attributes={"worker": worker, "i": i, "blob": big})

    threads = [threading.Thread(target=emit_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([path], on_error=lambda *p: problems.append(p)))
    assert problems == []
    assert sorted((r["attributes"]["worker"], r["attributes"]["i"]) for r in records) == [
        (w, i) for w in range(8) for i in range(50)
    ]


# --------------------------------------------------------------------------------------------------
# The direct encoder against the protobuf reference
#
# The exporter writes SDK records straight to JSON (logs_to_collector_json); the previous route, the SDK's
# protobuf encoder + json_format + reshaping (request_to_collector_json(encode_logs(batch))), is kept as the
# oracle: on any batch both must give the same bytes, or both fail.

_FUZZ_BATCHES = int(os.environ.get("AUDITRAIL_FUZZ_BATCHES", "600"))
_PDATACHECK = Path(os.environ.get("AUDITRAIL_PDATACHECK", "/tmp/pdatacheck/pdatacheck"))

_ODD_CHARS = (
    [chr(c) for c in range(0x20)]
    + ["\x7f", "\x80", "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff", "é", "€", "\U0001f600"]
    + ["\U0010ffff", "<", ">", "&", "'", '"', "\\", "/", "\\b", "\\f", "\\u0008", "\\\b"]
)
_ODD_FLOATS = [
    0.0, -0.0, 1.0, 0.5, 3.0, 1e-4, 9.999e-5, 1e-5, 1e-6, 9.99e-7, 1e-7, 5e-324, 2.2250738585072014e-308,
    999999999999999.9, 1e15, 1e16, 1e20, 1e21, 1.5e21, 1e22, 1.7976931348623157e308, float("nan"), float("inf"),
    0.1, 1 / 3, 123456.789, 2.5e-8, 2.0**53, 2.0**63, 12345678901234567890.0,
]  # fmt: skip


class _Level(enum.IntEnum):
    HIGH = 7


class _Text(str):
    pass


class _Ratio(float):
    pass


def _random_text(rng: random.Random, *, surrogates: bool = False) -> str:
    chars = []
    for _ in range(rng.choice([0, 1, 2, 5, 12, 40])):
        draw = rng.random()
        if draw < 0.5:
            chars.append(chr(rng.randrange(0x20, 0x7F)))
        elif draw < 0.8:
            chars.append(rng.choice(_ODD_CHARS))
        else:
            code = rng.randrange(0x80, 0x110000)
            chars.append(chr(code if surrogates or not 0xD800 <= code < 0xE000 else 0xE000))
    return "".join(chars)


def _random_float(rng: random.Random) -> float:
    draw = rng.random()
    if draw < 0.4:
        return rng.choice(_ODD_FLOATS) * rng.choice([1, -1])
    if draw < 0.6:
        return struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]  # any bit pattern
    if draw < 0.8:
        return rng.uniform(-1e3, 1e3)
    return 10 ** rng.uniform(-12, 25) * rng.choice([1, -1])


def _random_value(rng: random.Random, depth: int = 0, *, odd: bool = True) -> Any:
    """An AnyValue-ish Python value; with ``odd``, sometimes one the SDK encoder maps oddly or refuses."""
    draw = rng.random()
    if depth < 4 and draw < 0.12:
        items = [_random_value(rng, depth + 1, odd=odd) for _ in range(rng.choice([0, 1, 2, 3, 5]))]
        return items if rng.random() < 0.5 else tuple(items)
    if depth < 4 and draw < 0.2:
        return {
            (_random_text(rng) if rng.random() < 0.9 else rng.randrange(100)): _random_value(rng, depth + 1, odd=odd)
            for _ in range(rng.choice([0, 1, 2, 4]))
        }
    draw = rng.random()
    if draw < 0.3:
        return _random_text(rng)
    if draw < 0.42:
        return rng.random() < 0.5
    if draw < 0.6:
        return rng.choice([0, 1, -1, 42, 2**31, 2**63 - 1, -(2**63), rng.getrandbits(63) - 2**62, -rng.getrandbits(63)])
    if draw < 0.78:
        return _random_float(rng)
    if draw < 0.86:
        return rng.randbytes(rng.choice([0, 1, 2, 3, 16]))
    if draw < 0.9 or not odd:
        return None
    return rng.choice(
        [
            lambda: _Level.HIGH,  # int subclass: intValue
            lambda: _Text("str subclass"),
            lambda: _Ratio(2.0),
            lambda: bytearray(b"\x01\x02"),  # a Sequence, not bytes: an array of ints
            lambda: range(3),
            lambda: {1, 2},  # not a Sequence: the SDK refuses it
            lambda: object(),
            lambda: 2**64,  # out of int64 range
            lambda: rng.getrandbits(64),
            lambda: "\ud800",  # a lone surrogate: protobuf refuses it
            lambda: {"k": "\udfff"},
            lambda: [[[[[[[[[[["deep"]]]]]]]]]]],
        ]
    )()


def _random_attributes(rng: random.Random, *, odd: bool = True) -> Any:
    attributes: dict[Any, Any] = {
        _random_text(rng) or "k": _random_value(rng, odd=odd) for _ in range(rng.choice([0, 0, 1, 3, 6, 12]))
    }
    if odd and rng.random() < 0.05:
        attributes[rng.choice([3, None, b"bytes-key", "", "\ud800"])] = "odd key"
    if rng.random() < 0.2:  # as the SDK's own records hold them, sometimes over the limit (dropped count)
        bounded = BoundedAttributes(maxlen=rng.choice([None, 2]), immutable=False, extended_attributes=True)
        for key, value in attributes.items():
            if isinstance(key, str) and key:
                bounded[key] = value
        return bounded
    return attributes


_RESOURCES = [
    Resource.create({"service.name": "billing-api"}),
    Resource({"service.name": "app", "n": 3, "ratio": 0.5, "tags": ("a", "b")}, schema_url="https://x/1.26.0"),
    # Equal to the one above (same attributes in another order): the SDK merges them under the first seen.
    Resource({"tags": ("a", "b"), "ratio": 0.5, "n": 3, "service.name": "app"}, schema_url="https://x/1.26.0"),
    Resource({}),
    Resource({"é\u2028": "\b\f<>&", "f": 1e21, "i": -7, "flags": (True, False), "fs": (1.0, 5e-7)}),
]
_SCOPES: list[InstrumentationScope | None] = [
    InstrumentationScope("auditrail", "0.1.0"),
    InstrumentationScope("auditrail", "0.1.0"),  # equal, distinct
    InstrumentationScope("http", None, "https://x/s", {"a": 1, "b": "x"}),
    InstrumentationScope("http", None, "https://x/s", {"b": "x", "a": 1}),  # equal, attributes reordered
    InstrumentationScope("", ""),
    None,
]
_BAD_FIELDS: list[tuple[str, Any]] = [
    ("timestamp", -1), ("timestamp", 2**64), ("timestamp", 1.5), ("observed_timestamp", -5),
    ("severity_text", b"utf-8 bytes"), ("severity_text", b"\xff"), ("severity_text", 3), ("event_name", "\ud800"),
    ("body", "\udfff"), ("trace_id", None), ("trace_id", 2**128), ("span_id", -1), ("trace_flags", 2**32),
    ("severity_number", 9),  # a plain int, not a SeverityNumber: the SDK leaves it out
]  # fmt: skip


def _random_record(rng: random.Random, *, odd: bool = True) -> ReadableLogRecord:
    log = LogRecord()
    log.timestamp = rng.choice([None, 0, 1, T0, rng.getrandbits(64)])
    log.observed_timestamp = rng.choice([0, 1_767_225_600_200_000_000, rng.getrandbits(63)])
    if rng.random() < 0.5:  # with trace context
        log.trace_id = rng.choice([rng.getrandbits(128), 1, 2**128 - 1])
        log.span_id = rng.choice([rng.getrandbits(64), 1, 2**64 - 1, 0])
        log.trace_flags = TraceFlags(rng.choice([0, 1, 3, 255]))
    log.severity_number = rng.choice([None, SeverityNumber.UNSPECIFIED, SeverityNumber.INFO, SeverityNumber.FATAL4])
    log.severity_text = rng.choice([None, "", "INFO", _random_text(rng)])
    log.body = rng.choice([None, _random_text(rng), _random_value(rng, odd=odd and rng.random() < 0.1)])
    log.attributes = _random_attributes(rng, odd=odd)
    log.event_name = rng.choice([None, "", "billing.plan.change", _random_text(rng)])
    if odd and rng.random() < 0.01:
        setattr(log, *rng.choice(_BAD_FIELDS))
    resource = rng.choice(_RESOURCES[: rng.randint(1, len(_RESOURCES))])
    scope = rng.choice(_SCOPES[: rng.randint(1, len(_SCOPES))])
    return ReadableLogRecord(log, resource, scope)


def _random_batch(seed: int, *, odd: bool = True) -> list[ReadableLogRecord]:
    rng = random.Random(seed)
    return [_random_record(rng, odd=odd) for _ in range(rng.choice([1, 1, 2, 3, 8, 20]))]


def _reference_line(batch: list[ReadableLogRecord]) -> bytes | str:
    """The protobuf route's line, or the name of what it raised."""
    try:
        return request_to_collector_json(encode_logs(batch)).encode("utf-8")
    except Exception as error:  # noqa: BLE001
        return type(error).__name__


def _direct_line(batch: list[ReadableLogRecord]) -> bytes | str:
    try:
        return logs_to_collector_json(batch)
    except Exception as error:  # noqa: BLE001
        return type(error).__name__


@pytest.fixture
def quiet_encoders() -> Iterator[None]:
    """Both encoders log every attribute they drop, with a traceback; thousands of them here."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _first_difference(expected: bytes, actual: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), min(len(expected), len(actual)))
    return f"at byte {at}: expected ...{expected[at - 80 : at + 80]!r}, got ...{actual[at - 80 : at + 80]!r}"


def test_direct_encoder_matches_the_protobuf_route_on_random_batches(quiet_encoders: None) -> None:
    failed = 0
    for seed in range(_FUZZ_BATCHES):
        batch = _random_batch(seed)
        expected, actual = _reference_line(batch), _direct_line(batch)
        if isinstance(expected, str):
            failed += 1
            assert isinstance(actual, str), f"seed {seed}: the protobuf route raised {expected}, the direct one did not"
            continue
        assert isinstance(actual, bytes), f"seed {seed}: the direct encoder raised {actual}"
        assert actual == expected, f"seed {seed}: {_first_difference(expected, actual)}"
    # Most batches encode; some hit a value or field protobuf refuses, and must fail both ways.
    assert 0 < failed < _FUZZ_BATCHES // 5


def _nested(levels: int, pattern: str) -> Any:
    value: Any = "x"
    for level in range(levels):
        shape = pattern[level % len(pattern)]
        value = {"l": [value], "d": {"k": value}, "L": [value, {}], "D": {"k": value, "e": []}}[shape]
    return value


def test_direct_encoder_fails_and_drops_deep_values_exactly_where_protobuf_does(quiet_encoders: None) -> None:
    # upb copies each message handed to a constructor through its wire format, with a depth limit: values
    # nested ~50 levels are dropped (attributes) or fail the batch. Sweep across each threshold.
    outcomes = set()
    for pattern in ["l", "d", "ld", "dl", "L", "D", "lLdD", "ddl"]:
        for levels in range(56):
            value = _nested(levels, pattern)
            for where in ["body", "attribute", "attribute beside a deep one", "scope attribute"]:
                attributes = {"a": value, "b": 1} if where.startswith("attribute") else None
                if where == "attribute beside a deep one":
                    attributes = {"a": value, "b": 1, "c": _nested(levels // 2, "l")}
                log = LogRecord(timestamp=T0, body=value if where == "body" else "b", attributes=attributes)
                scope = InstrumentationScope("s", attributes={"a": value} if where == "scope attribute" else None)
                batch = [ReadableLogRecord(log, Resource({}), scope)]
                expected, actual = _reference_line(batch), _direct_line(batch)
                if isinstance(expected, str):  # the protobuf route raised (which error does not matter)
                    assert isinstance(actual, str), f"{where}, {levels} levels of {pattern!r}: should fail"
                else:
                    assert actual == expected, f"{where}, {levels} levels of {pattern!r}"
                outcomes.add("fails" if isinstance(expected, str) else "dropped" if b'"a"' not in expected else "kept")
    assert outcomes == {"kept", "dropped", "fails"}


def test_equal_resources_and_scopes_are_merged_under_the_first_one_seen() -> None:
    first, same = _RESOURCES[1], _RESOURCES[2]
    assert first == same and first is not same
    scope, same_scope = _SCOPES[2], _SCOPES[3]
    batch = [
        ReadableLogRecord(LogRecord(timestamp=T0 + i, body=str(i)), resource, scope_)
        for i, (resource, scope_) in enumerate([(first, scope), (same, same_scope), (_RESOURCES[3], scope), (same, scope)])
    ]
    line = logs_to_collector_json(batch)
    assert line == _reference_line(batch)
    request = json.loads(line)
    assert [len(rl["scopeLogs"][0]["logRecords"]) for rl in request["resourceLogs"]] == [3, 1]
    keys = [kv["key"] for kv in request["resourceLogs"][0]["resource"]["attributes"]]
    assert keys == ["service.name", "n", "ratio", "tags"], "the first resource's attribute order"


def test_attribute_the_sdk_cannot_encode_is_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.jsonl"
    exporter = OTLPJsonLinesExporter(path)
    attributes = {"ok": 1, "surrogate": "\ud800", "too.big": 2**64, "set": {1}, "tail": "é"}
    record = ReadableLogRecord(LogRecord(timestamp=T0, body="b", attributes=attributes), Resource({}), None)
    assert exporter.export([record]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    (line,) = _lines(path)
    assert line.encode() == _reference_line([record])
    assert [kv["key"] for kv in _only_record(json.loads(line))["attributes"]] == ["ok", "tail"]
    dropped = [r.getMessage() for r in caplog.records if r.name == "auditrail.exporters.otlp_json"]
    assert [message.split(":")[0] for message in dropped] == [
        "Failed to encode key surrogate",
        "Failed to encode key too.big",
        "Failed to encode key set",
    ]


def test_record_protobuf_would_refuse_fails_the_export_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "x.jsonl"
    exporter = OTLPJsonLinesExporter(path)
    good = ReadableLogRecord(LogRecord(timestamp=T0, body="fine"), Resource({}), InstrumentationScope("auditrail"))
    for field, bad in [("body", "\udfff"), ("timestamp", -1), ("body", 2**63), ("event_name", 3)]:
        log = LogRecord(timestamp=T0, body="x")
        setattr(log, field, bad)
        batch = [good, ReadableLogRecord(log, Resource({}), InstrumentationScope("auditrail"))]
        assert isinstance(_reference_line(batch), str), field
        assert exporter.export(batch) is LogRecordExportResult.FAILURE
    assert "cannot encode 2 log records" in caplog.text
    assert exporter.export([good]) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    assert len(_lines(path)) == 1


class _LabelledSeverity(enum.Enum):
    WARN = "SEVERITY_NUMBER_WARN"  # protobuf takes an enum label
    BOGUS = "no such label"
    FLOAT = 9.0
    UNKNOWN = 100  # proto3 enums are open


@pytest.mark.parametrize(
    ("field", "value"),
    [("severity_number", member) for member in _LabelledSeverity]
    + [("timestamp", value) for value in (0.0, "", b"", 2**64 - 1, 2**64)]
    + [("severity_text", value) for value in (0, "", b"", b"bytes", 0.0)]
    + [("event_name", value) for value in (0, b"", b"bytes", "\x00")]
    + [("trace_flags", value) for value in (0, 2**32 - 1, -1)]
    + [("span_id", value) for value in (True, 2**64, 0.0)],
)
def test_odd_field_values_are_taken_or_refused_like_protobuf(field: str, value: Any, quiet_encoders: None) -> None:
    log = LogRecord(timestamp=T0, body="x")
    setattr(log, field, value)
    batch = [ReadableLogRecord(log, Resource({}), None)]
    expected, actual = _reference_line(batch), _direct_line(batch)
    assert actual == expected or (isinstance(expected, str) and isinstance(actual, str))


def test_cached_resource_and_scope_fragments_follow_the_objects_not_their_ids() -> None:
    # Fragments are cached per object; a new object (even at a recycled id) is encoded afresh.
    for i in range(50):
        resource = Resource({"service.name": f"svc-{i}"})
        scope = InstrumentationScope(f"scope-{i}", str(i), attributes={"i": i})
        batch = [ReadableLogRecord(LogRecord(timestamp=T0, body=i), resource, scope)]
        assert logs_to_collector_json(batch) == _reference_line(batch)
        del resource, scope, batch


@pytest.mark.skipif(not _PDATACHECK.exists(), reason=f"no pdata checker at {_PDATACHECK} (set AUDITRAIL_PDATACHECK)")
def test_collectors_pdata_rewrites_random_lines_to_the_same_bytes(quiet_encoders: None) -> None:
    # The checker (Go, go.opentelemetry.io/collector/pdata) unmarshals each line with plog.JSONUnmarshaler
    # and marshals it back with plog.JSONMarshaler, the collector file exporter's encoder; it prints any line
    # that changes. Not part of the repo: see the skip reason.
    lines = []
    for seed in range(3000):
        line = _direct_line(_random_batch(100_000 + seed))
        if isinstance(line, bytes):
            lines.append(line)
    assert len(lines) > 2500
    checked = subprocess.run(
        [str(_PDATACHECK)], input=b"\n".join(lines) + b"\n", capture_output=True, timeout=300, check=False
    )
    report = checked.stdout.decode("utf-8", "replace")
    assert checked.returncode == 0, report[-3000:]
    assert f"{len(lines)} lines, 0 differ" in report


# --------------------------------------------------------------------------------------------------
# Reading


def test_read_records_round_trips_every_value(emitted: Emitted) -> None:
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([emitted.path], on_error=lambda *p: problems.append(p)))
    assert problems == []
    assert len(records) == len(emitted.records)
    for flat, sdk in zip(records, emitted.records, strict=True):
        log = sdk.log_record
        assert set(flat) == {
            "event_name", "time_unix_nano", "observed_time_unix_nano", "severity_number", "severity_text",
            "body", "attributes", "resource", "scope_name", "scope_version", "trace_id", "span_id",
        }  # fmt: skip
        assert flat["event_name"] == log.event_name
        assert flat["time_unix_nano"] == (log.timestamp or 0)
        assert flat["observed_time_unix_nano"] == log.observed_timestamp
        assert flat["severity_number"] == log.severity_number.value
        assert flat["severity_text"] == log.severity_text
        assert flat["body"] == log.body
        # The SDK stores sequences as tuples; OTLP has arrays, which read back as lists.
        assert flat["attributes"] == {k: list(v) if isinstance(v, tuple) else v for k, v in log.attributes.items()}
        assert flat["resource"] == dict(sdk.resource.attributes)
        assert flat["scope_name"] == sdk.instrumentation_scope.name
        assert flat["scope_version"] == sdk.instrumentation_scope.version
        assert flat["trace_id"] == (format_trace_id(log.trace_id) if log.trace_id else None)
        assert flat["span_id"] == (format_span_id(log.span_id) if log.span_id else None)
    assert records[0]["attributes"][semconv.CHAIN_SEQ] == 42 and isinstance(records[0]["attributes"]["audit.ratio"], float)
    assert records[0]["trace_id"] == format_trace_id(emitted.span.trace_id)
    assert records[1]["body"] == {"pages": 42, "note": "nightly"}


def test_read_records_decodes_every_any_value_kind(tmp_path: Path) -> None:
    path = tmp_path / "values.jsonl"
    body = {"s": "é", "b": False, "i": -(2**63), "d": float("inf"), "a": [1, "x", None], "m": {"k": [True]}, "y": b"\x00\xff"}
    record = ReadableLogRecord(LogRecord(timestamp=T0, body=body), Resource({}), InstrumentationScope("auditrail"))
    exporter = OTLPJsonLinesExporter(path)
    exporter.export([record])
    exporter.shutdown()
    (flat,) = read_records([path])
    assert flat["body"] == body


def test_torn_last_line_is_skipped_and_reported_while_earlier_records_are_read(emitted: Emitted) -> None:
    whole = emitted.path.read_bytes()
    last = whole.splitlines(keepends=True)[-1]
    # A crash in the middle of the third write: only part of its line reached the file.
    emitted.path.write_bytes(whole[: -len(last)] + last[: len(last) // 2])
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([emitted.path], on_error=lambda *p: problems.append(p)))
    assert [r["event_name"] for r in records] == ["billing.plan.change", "crawl.run"]
    assert len(problems) == 1
    path, lineno, message = problems[0]
    assert (path, lineno) == (str(emitted.path), 3)
    assert message.startswith("torn last line")


def test_torn_tail_is_logged_as_a_warning_by_default(emitted: Emitted, caplog: pytest.LogCaptureFixture) -> None:
    with emitted.path.open("ab") as stream:
        stream.write(b'{"resourceLogs":[{"reso')
    assert len(list(read_records([emitted.path]))) == 3
    assert f"{emitted.path}:4: skipped: torn last line" in caplog.text


def test_malformed_line_in_the_middle_is_reported_and_reading_goes_on(emitted: Emitted) -> None:
    lines = emitted.path.read_bytes().splitlines(keepends=True)
    emitted.path.write_bytes(lines[0] + b"not json at all\n" + b"[1, 2]\n" + b"\n" + lines[1] + lines[2])
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([emitted.path], on_error=lambda *p: problems.append(p)))
    assert len(records) == 3
    assert [(lineno, message.split(":")[0]) for _, lineno, message in problems] == [
        (2, "malformed line"),
        (3, "malformed line"),
    ]


def test_exporter_ends_a_torn_tail_before_appending_so_no_new_record_is_lost(emitted: Emitted) -> None:
    with emitted.path.open("ab") as stream:
        stream.write(b'{"resourceLogs":[{"resource":{"attri')  # the previous process died here
    provider, _ = _provider(emitted.path)
    provider.get_logger(semconv.SCOPE_NAME).emit(event_name="killswitch.disable", timestamp=T0)
    provider.shutdown()
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([emitted.path], on_error=lambda *p: problems.append(p)))
    assert [r["event_name"] for r in records][-1] == "killswitch.disable"
    assert len(records) == 4
    assert [(lineno, message.split(":")[0]) for _, lineno, message in problems] == [(4, "malformed line")]


def test_reader_recovers_a_request_glued_onto_a_torn_fragment(emitted: Emitted) -> None:
    # What a writer that does not repair the tail leaves behind: fragment and next line on one line.
    lines = emitted.path.read_bytes().splitlines(keepends=True)
    emitted.path.write_bytes(lines[0][:40] + lines[1] + lines[2])
    problems: list[tuple[str, int, str]] = []
    records = list(read_records([emitted.path], on_error=lambda *p: problems.append(p)))
    assert [r["event_name"] for r in records] == ["crawl.run", None]
    assert len(problems) == 1 and "40-byte torn fragment" in problems[0][2]


def test_reader_accepts_protobuf_json_with_base64_ids_and_snake_case(emitted: Emitted, tmp_path: Path) -> None:
    request = encode_logs(emitted.records[:1])
    camel = tmp_path / "camel.jsonl"
    snake = tmp_path / "snake.jsonl"
    camel.write_text(json_format.MessageToJson(request, indent=None) + "\n")
    snake.write_text(json_format.MessageToJson(request, indent=None, preserving_proto_field_name=True) + "\n")
    expected = next(read_records([emitted.path]))
    assert next(read_records([camel])) == expected
    assert next(read_records([snake])) == expected


def test_read_records_of_a_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_records([tmp_path / "nope.jsonl"]))


# --------------------------------------------------------------------------------------------------
# auditrail show


def _table(records: list[dict[str, Any]]) -> tuple[int, str]:
    console = Console(record=True, width=200)
    rows = render_table(records, console)
    return rows, console.export_text()


def test_table_shows_time_event_tenant_actor_change_ip_and_outcome(emitted: Emitted) -> None:
    rows, text = _table(list(read_records([emitted.path])))
    assert rows == 2, "the app's own log is not an audit event"
    header = next(line for line in text.splitlines() if "time" in line)
    for column in ("time", "event", "tenant", "actor", "before -> after", "source IP", "outcome/risk"):
        assert column in header
    plan_row = next(line for line in text.splitlines() if "billing.plan.change" in line)
    cells = [cell.strip() for cell in plan_row.strip("│┃| ").split("│")]
    assert cells == [
        "2026-01-01T00:00:00.123Z",
        "billing.plan.change",
        "acme",
        "ops@example.com (via admin@example.com)",
        "plan=free -> plan=pro",
        "203.0.113.7",
        "success/high",
    ]
    crawl_row = next(line for line in text.splitlines() if "crawl.run" in line)
    assert "2026-01-01T00:00:01.123Z" in crawl_row
    assert "domain=docs.acme.io pages=42" in crawl_row
    assert "failure/low" in crawl_row
    assert "GET /health" not in text


def test_table_counts_records_with_an_event_id_from_any_scope() -> None:
    records = [
        {"scope_name": "custom", "attributes": {semconv.EVENT_ID: "e1"}, "event_name": "x"},
        {"scope_name": "custom", "attributes": {}, "event_name": "y"},
    ]
    rows, text = _table(records)
    assert rows == 1 and " x " in text and " y " not in text


def test_table_truncates_long_values_and_neutralises_markup_and_escapes() -> None:
    payload = {
        "before": {"prompt": "p" * 100, "owner": "[bold red]mallory[/bold red]"},
        "after": {"prompt": "q", "owner": "eve\x1b[2J"},
    }
    record = {
        "scope_name": "auditrail",
        "time_unix_nano": T0,
        "event_name": "prompt.update",
        "attributes": {semconv.PAYLOAD: json.dumps(payload), semconv.ACTOR: "[link=x]bob[/link]"},
    }
    rows, text = _table([record])
    assert rows == 1
    assert "prompt=" + "p" * 39 + "…" in text and "p" * 41 not in text
    assert 'owner="[bold red]mallory[/bold red]"' in text  # shown literally (quoted: it has a space), not rendered
    assert "[link=x]bob[/link]" in text
    assert "\x1b" not in text and "eve\\x1b[2J" in text


def test_table_colours_failure_red_and_high_risk_yellow() -> None:
    records = [
        {"scope_name": "auditrail", "event_name": "a", "attributes": {semconv.OUTCOME: "failure", semconv.RISK: "critical"}},
        {"scope_name": "auditrail", "event_name": "b", "attributes": {semconv.OUTCOME: "success", semconv.RISK: "high"}},
    ]
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    render_table(records, console)
    styled = console.export_text(styles=True)
    assert "\x1b[1;31mfailure\x1b[0m/\x1b[1;31mcritical" in styled
    assert "success/\x1b[33mhigh" in styled


def test_time_is_iso_utc_with_milliseconds_and_falls_back_to_observed_time() -> None:
    assert format_time({"time_unix_nano": 1_700_000_000_999_999_999}) == "2023-11-14T22:13:20.999Z"  # truncated
    assert format_time({"time_unix_nano": 1_700_000_000_007_000_000}) == "2023-11-14T22:13:20.007Z"
    assert format_time({"time_unix_nano": 0, "observed_time_unix_nano": T0}) == "2026-01-01T00:00:00.123Z"


def test_show_filters_by_type_prefix_and_tenant_and_prints_json_lines(
    emitted: Emitted, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_show([str(emitted.path), "--type", "billing", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_name"] for line in lines] == ["billing.plan.change"]
    assert json.loads(lines[0])["attributes"][semconv.TENANT] == "acme"

    assert main_show([str(emitted.path), "--tenant", "globex", "--json"]) == 0
    assert [json.loads(line)["event_name"] for line in capsys.readouterr().out.splitlines()] == ["crawl.run"]

    # A prefix matches whole dotted segments only.
    assert main_show([str(emitted.path), "--type", "bill", "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_show_renders_the_table_and_reports_a_torn_line(emitted: Emitted, capsys: pytest.CaptureFixture[str]) -> None:
    with emitted.path.open("ab") as stream:
        stream.write(b'{"resourceLogs":')
    console = Console(record=True, width=200)
    assert main_show([str(emitted.path)], console=console) == 0
    assert "plan=free -> plan=pro" in console.export_text()
    assert f"warning: {emitted.path}:4: torn last line" in capsys.readouterr().err


def test_show_reports_a_missing_file_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.jsonl"
    assert main_show([str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no such file: {missing}" in err
    assert "Traceback" not in err


def test_show_usage_error_returns_exit_code_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_show([]) == 2
    assert "usage: auditrail show" in capsys.readouterr().err
