"""The real collector (bin/otelcol-auditrail) with the repository's configs, against real wire protocols:
ClickHouse over HTTP (chDB behind the test fixture, our migrated schema), CloudWatch Logs (moto server) and
Cloud Logging (gRPC server on google-cloud-logging's types). Every destination runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from clickhouse_http import migrated, stored_events
from destinations import FakeCloudLogging, MotoServer, WebhookRecorder
from collector import (TOKEN, AuditEvent, Collector, audit_request, collector_env, require_binary, wait_for_at_least,
                       wait_until)

LOG_GROUP = "/auditrail/high-risk"
LOG_STREAM = "collector-test"
GCP_PROJECT = "auditrail-test"
GCP_LOG_NAME = "auditrail-high-risk"


class Stack:
    """The collector and its destinations, up for the whole module."""

    def __init__(self, root: Path) -> None:
        self.clickhouse = migrated(root / "chdb")
        self.moto = MotoServer(root / "moto.log")
        self.moto.start()
        self.gcp = FakeCloudLogging()
        self.gcp.start()
        self.chat = WebhookRecorder()
        self.chat.start()
        self.collector = Collector(root / "collector", collector_env(
            AUDITRAIL_CLICKHOUSE_ENDPOINT=self.clickhouse.url,
            AUDITRAIL_CLICKHOUSE_COMPRESS="gzip",
            AUDITRAIL_CLOUDWATCH_ENDPOINT=self.moto.url,
            AUDITRAIL_CLOUDWATCH_LOG_GROUP=LOG_GROUP,
            AUDITRAIL_CLOUDWATCH_LOG_STREAM=LOG_STREAM,
            AUDITRAIL_GCP_PROJECT=GCP_PROJECT,
            AUDITRAIL_GCP_LOG_NAME=GCP_LOG_NAME,
            AUDITRAIL_GCP_LOGGING_ENDPOINT=self.gcp.endpoint,
            AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=self.chat.url,
        ))
        self.collector.start()

    def close(self) -> None:
        self.collector.stop()
        self.chat.stop()
        self.gcp.stop()
        self.moto.stop()
        self.clickhouse.stop()

    def stored(self, tenant: str) -> dict[str, tuple[str, int]]:
        return stored_events(self.clickhouse, tenant)

    def raw_copies(self, tenant: str) -> int:
        """Rows in otel_logs for the tenant, before any dedup."""
        rows = self.clickhouse.rows(
            f"SELECT count() AS n FROM auditrail.otel_logs WHERE LogAttributes['audit.tenant_id'] = '{tenant}'")
        return int(rows[0]["n"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary()
    s = Stack(tmp_path_factory.mktemp("collector-stack"))
    try:
        yield s
    finally:
        s.close()


def mixed_events(tenant: str) -> list[AuditEvent]:
    """One of each routing case: low/medium stay in the store, high/critical and checkpoints stream out."""
    return [
        AuditEvent("crawl.run", "low", tenant),
        AuditEvent("policy.update", "medium", tenant),
        AuditEvent("prompt.update", "high", tenant),
        AuditEvent("admin.impersonation.start", "critical", tenant),
        AuditEvent("killswitch.disable", "critical", tenant),
        AuditEvent("billing.plan.change", "medium", tenant),
        AuditEvent("audit.checkpoint", "low", tenant),
    ]


def streamed_out(events: list[AuditEvent]) -> set[str]:
    return {e.event_id for e in events if e.risk in ("high", "critical") or e.event_name == "audit.checkpoint"}


def test_every_event_sent_over_otlp_is_stored_once_in_clickhouse(stack: Stack) -> None:
    tenant = "t-store"
    events = [AuditEvent(f"custom.e{i % 5}", "low", tenant) for i in range(300)] + mixed_events(tenant)
    for start in range(0, len(events), 50):
        assert stack.collector.send(audit_request(events[start:start + 50])) == 200

    stored = wait_for_at_least(lambda: stack.stored(tenant), len(events), what="events in audit_events")
    assert set(stored) == {e.event_id for e in events}
    assert all(n == 1 for _, n in stored.values())
    assert {stored[e.event_id][0] for e in events} == {e.event_name for e in events}
    assert stack.raw_copies(tenant) == len(events)


def test_otlp_without_the_bearer_token_is_refused(stack: Stack) -> None:
    tenant = "t-unauth"
    request = audit_request([AuditEvent("prompt.update", "high", tenant)])
    assert stack.collector.send(request, token=None) == 401
    assert stack.collector.send(request, token="wrong-token") == 401
    # OTLP/gRPC: the same, as UNAUTHENTICATED; the right token goes through.
    with grpc.insecure_channel(f"127.0.0.1:{stack.collector.grpc_port}") as channel:
        export = logs_service_pb2_grpc.LogsServiceStub(channel).Export
        for metadata in ((), (("authorization", "Bearer wrong-token"),)):
            with pytest.raises(grpc.RpcError) as refused:
                export(request, metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A request that is let in afterwards lands; the refused ones never did.
    marker = AuditEvent("crawl.run", "low", tenant)
    assert stack.collector.send(audit_request([marker])) == 200
    wait_until(lambda: marker.event_id in stack.stored(tenant), timeout=30, what="the authorized event")
    assert set(stack.stored(tenant)) == {marker.event_id}


def test_cloudwatch_logs_receives_exactly_the_high_risk_events_and_checkpoints(stack: Stack) -> None:
    tenant = "t-cloudwatch"
    events = mixed_events(tenant) * 1  # one of each
    assert stack.collector.send(audit_request(events)) == 200
    wanted = streamed_out(events)

    def received() -> dict[str, dict]:
        docs = [json.loads(m) for m in stack.moto.log_messages(LOG_GROUP, LOG_STREAM)]
        return {d["attributes"]["audit.event_id"]: d for d in docs if d["attributes"].get("audit.tenant_id") == tenant}

    got = wait_for_at_least(received, len(wanted), what="CloudWatch events")
    assert set(got) == wanted
    assert {d["event_name"] for d in got.values()} == {
        "prompt.update", "admin.impersonation.start", "killswitch.disable", "audit.checkpoint"}
    # Each once: nothing more arrives for this tenant.
    messages = [m for m in stack.moto.log_messages(LOG_GROUP, LOG_STREAM) if tenant in m]
    assert len(messages) == len(wanted)


def test_cloud_logging_receives_the_same_events_with_project_and_log_name(stack: Stack) -> None:
    tenant = "t-gcp"
    events = mixed_events(tenant)
    assert stack.collector.send(audit_request(events)) == 200
    wanted = streamed_out(events)

    def received() -> dict[str, tuple[str, object]]:
        return {e.labels["audit.event_id"]: (name, e) for name, e in stack.gcp.entries()
                if e.labels.get("audit.tenant_id") == tenant}

    got = wait_for_at_least(received, len(wanted), what="Cloud Logging entries")
    assert set(got) == wanted
    assert {name for name, _ in got.values()} == {f"projects/{GCP_PROJECT}/logs/{GCP_LOG_NAME}"}
    entries = [e for _, e in stack.gcp.entries() if e.labels.get("audit.tenant_id") == tenant]
    assert len(entries) == len(wanted)


def test_alert_rules_send_one_google_chat_card_per_alerting_event(stack: Stack) -> None:
    tenant = "t-alerts"
    events = mixed_events(tenant)
    assert stack.collector.send(audit_request(events)) == 200
    alerting = {"prompt.update", "admin.impersonation.start", "killswitch.disable"}

    def cards() -> list[dict]:
        return [p for p in stack.chat.posts if tenant in json.dumps(p)]

    got = wait_for_at_least(cards, len(alerting), what="Google Chat cards")
    time.sleep(1.0)  # anything more (a low-risk event, a duplicate) would have arrived by now
    got = cards()
    titles = [p["cardsV2"][0]["card"]["header"]["title"] for p in got]
    assert sorted(titles) == sorted(alerting)


def test_credentials_in_a_payload_are_masked_in_cloud_copies_but_kept_in_the_store(stack: Stack) -> None:
    tenant = "t-redaction"
    leaked = '{"after":{"aws_key":"AKIAABCDEFGHIJKLMNOP"},"before":{}}'
    event = AuditEvent("policy.update", "high", tenant, payload=leaked)
    assert stack.collector.send(audit_request([event])) == 200

    def cloudwatch() -> list[dict]:
        docs = [json.loads(m) for m in stack.moto.log_messages(LOG_GROUP, LOG_STREAM) if tenant in m]
        return [d for d in docs if d["attributes"]["audit.event_id"] == event.event_id]

    [doc] = wait_for_at_least(cloudwatch, 1, what="the CloudWatch copy")
    assert "AKIAABCDEFGHIJKLMNOP" not in doc["attributes"]["audit.payload"]
    assert doc["attributes"]["audit.event_id"] == event.event_id  # ids and chain fields are never touched
    wait_for_at_least(lambda: stack.stored(tenant), 1, what="the stored event")
    [row] = stack.clickhouse.rows(
        f"SELECT payload FROM auditrail.audit_events_unique WHERE tenant_id = '{tenant}'")
    assert row["payload"] == leaked  # the store keeps what the hash chain covers


EMIT_CHAINED_EVENTS = """
import auditrail
for i in range(30):
    auditrail.emit("policy.update", tenant="t-chain", actor="alice@acme.io", before={"v": i}, after={"v": i + 1},
                   reason="threshold tuning")
"""


def test_events_emitted_by_auditrail_verify_in_clickhouse_after_passing_the_collector(
        stack: Stack, tmp_path: Path) -> None:
    """The real instrumentation's OTLP exporter -> collector -> ClickHouse; `auditrail verify` finds every hash
    chain intact: nothing on the store path alters a hashed field."""
    env = {**os.environ, "AUDITRAIL_EXPORTER": "otlp",
           "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{stack.collector.otlp_http}/v1/logs",
           "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKEN}"}
    env.pop("AUDITRAIL_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", EMIT_CHAINED_EVENTS], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stored = wait_for_at_least(lambda: stack.stored("t-chain"), 30, what="chained events stored")
    assert {t for t, _ in stored.values()} == {"policy.update", "audit.checkpoint"}  # the tenant's chain, anchored
    verify = subprocess.run([str(Path(sys.executable).with_name("auditrail")), "verify", "--tenant", "t-chain",
                             "--url", stack.clickhouse.url], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verify: OK" in verify.stdout
