"""The direct encoders of audit events equal the SDK's route (AuditEvent -> SDK LogRecord -> encode_logs)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from auditrail.events import AuditEvent
from auditrail.exporters.otlp_json import _encode_batch, logs_to_collector_json
from auditrail.exporters.otlp_proto import EventEncoder, varint
from auditrail.pipeline import event_view, to_log_record

TEXTS = ["", "a", "é→✓", "x" * 125, "y" * 126, "z" * 200, "w" * 20000, "tab\there \"quoted\" \\ \b\f\n"]


def random_event(rng: random.Random, seq: int) -> AuditEvent:
    def maybe() -> str | None:
        return rng.choice([None, *TEXTS])

    extra = {"audit.chain.id": "0193" + "a" * 28, "audit.chain.seq": rng.choice([seq, 16383, 16384, 2**40, -5]),
             "audit.chain.prev_hash": "ab" * 32, "audit.chain.hash": "cd" * 32}
    if rng.random() < 0.3:  # checkpoint-like or custom extras of other types
        extra.update({"audit.checkpoint.count": rng.randrange(10**6), "x.flag": rng.random() < 0.5,
                      "x.ratio": rng.choice([0.5, 1e-7, 1e21, -3.0]), "x.list": ["a", 1, [2.5, True]],
                      "x.map": {"k": "v", "n": {"m": 1}}, "x.bytes": b"\x00\xff", "x.none": None})
    return AuditEvent(
        rng.choice(["prompt.update", "crawl.run", "admin.impersonation.start", "my_app.thing"]),
        tenant=maybe(), actor=maybe(), actor_type=rng.choice(["user", "service", "system"]),
        payload=rng.choice(['{}', '{"before":{"p":"a"},"after":{"p":"b"}}', '{"big":"' + "q" * 20000 + '"}']),
        source_ip=maybe(), reason=maybe(), outcome=rng.choice(["success", "failure"]),
        risk=rng.choice(["low", "medium", "high", "critical"]), impersonator=maybe(), impersonation_id=maybe(),
        approval_id=maybe(), time_unix_nano=rng.choice([rng.randrange(1, 2**63), 0]),
        trace_id=rng.choice([0, rng.getrandbits(128) or 1]), span_id=rng.choice([0, rng.getrandbits(64) or 1]),
        trace_flags=rng.choice([0, 1]), extra=rng.choice([None, extra]),
    )


RESOURCE = Resource.create({"service.name": "svc", "service.version": "1.2", "n": 3, "f": 0.25, "l": ["a", "b"]})
SCOPE = InstrumentationScope("auditrail", "0.1.0")


@pytest.mark.parametrize("seed", range(20))
def test_protobuf_bytes_equal_the_sdk_encoding(seed):
    rng = random.Random(seed)
    events = [random_event(rng, i + 1) for i in range(rng.randrange(1, 60))]
    expected = encode_logs([to_log_record(e, RESOURCE, SCOPE) for e in events]).SerializeToString()
    assert EventEncoder(RESOURCE, SCOPE).encode(events) == expected


def test_an_empty_resource_and_a_scope_with_attributes_and_schema_urls():
    resource = Resource({}, schema_url="https://opentelemetry.io/schemas/1.26.0")
    scope = InstrumentationScope("auditrail", None, "https://example.com/s", {"a": "b"})
    events = [AuditEvent("prompt.update", tenant="t")]
    expected = encode_logs([to_log_record(e, resource, scope) for e in events]).SerializeToString()
    assert EventEncoder(resource, scope).encode(events) == expected
    assert ExportLogsServiceRequest.FromString(expected).resource_logs[0].schema_url.endswith("1.26.0")


def test_varint_matches_protobuf_for_boundaries_and_negative_int64():
    from google.protobuf.internal import encoder

    for value in (0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1, -1, -(2**63)):
        out: list[bytes] = []
        encoder._EncodeSignedVarint(out.append, value)
        assert varint(value) == b"".join(out), value


@pytest.mark.parametrize("seed", range(10))
def test_event_view_gives_the_same_otlp_json_as_sdk_records(seed):
    rng = random.Random(seed)
    events = [random_event(rng, i + 1) for i in range(rng.randrange(1, 40))]
    expected = logs_to_collector_json([to_log_record(e, RESOURCE, SCOPE) for e in events])
    assert _encode_batch([event_view(e, RESOURCE, SCOPE) for e in events], b"") == expected
