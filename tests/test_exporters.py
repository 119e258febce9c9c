"""AUDITRAIL_EXPORTER end to end: OTLP over HTTP and gRPC to local receivers, and the console exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditrail import semconv
from otlp_receiver import OTLPGrpcReceiver, OTLPHttpReceiver, make_tls_files

BIN = Path(sys.executable).parent

APP = """
from billing.plans import change_plan
change_plan("acme", "pro", actor="alice@acme.io")
change_plan("globex", "team", actor="carol@globex.com")
print("app done")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "__init__.py").write_text("")
    (tmp_path / "billing" / "plans.py").write_text("PLANS = {}\n\ndef change_plan(tenant_id, plan, actor):\n    PLANS[tenant_id] = plan\n")
    (tmp_path / "main.py").write_text(textwrap.dedent(APP))
    (tmp_path / "audit.yaml").write_text(textwrap.dedent("""
        service_name: billing-svc
        delivery: {mode: best_effort}
        events:
          - target: billing.plans:change_plan
            event: billing.plan.change
            tenant: tenant_id
            actor: actor
            after: {plan: plan}
        """))
    return tmp_path


def run_app(app_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run([str(BIN / "auditrail-instrument"), "python", "main.py"], cwd=app_dir, env=full_env,
                          capture_output=True, text=True, timeout=60)


def attrs_of(record) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in record.attributes}


@pytest.mark.parametrize("receiver_cls,protocol", [(OTLPHttpReceiver, "http/protobuf"), (OTLPGrpcReceiver, "grpc")])
def test_otlp_exporter_delivers_to_the_endpoint_with_standard_otel_settings(app_dir, receiver_cls, protocol):
    with receiver_cls() as receiver:
        done = run_app(app_dir, AUDITRAIL_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                       OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                       OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cret")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "app done"
        records = [r for r in receiver.received.log_records() if r.event_name != "audit.checkpoint"]
        headers = receiver.received.headers
    assert [r.event_name for r in records] == ["billing.plan.change", "billing.plan.change"]
    first = attrs_of(records[0])
    assert first[semconv.TENANT] == "acme" and first[semconv.ACTOR] == "alice@acme.io"
    assert json.loads(first[semconv.PAYLOAD]) == {"after": {"plan": "pro"}}
    assert all(h.get("authorization") == "Bearer s3cret" for h in headers)
    request = receiver.received.requests[0]
    assert request.resource_logs[0].scope_logs[0].scope.name == "auditrail"
    service = {kv.key: kv.value.string_value for kv in request.resource_logs[0].resource.attributes}["service.name"]
    assert service == "billing-svc"


def test_console_exporter_prints_one_json_record_per_line(app_dir):
    done = run_app(app_dir, AUDITRAIL_EXPORTER="console")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    lines = [line for line in lines if line["event_name"] != "audit.checkpoint"]
    assert [line["event_name"] for line in lines] == ["billing.plan.change"] * 2
    assert lines[1]["attributes"][semconv.TENANT] == "globex"


def test_forked_children_keep_auditing_with_their_own_drain_thread(app_dir):
    """A pre-fork server's workers: each child starts its own worker; every event reaches the file."""
    (app_dir / "main.py").write_text(textwrap.dedent("""
        import os, sys
        from billing.plans import change_plan
        change_plan("parent", "free", actor="p")
        children = []
        for i in range(3):
            pid = os.fork()
            if pid == 0:
                change_plan(f"child{i}", "pro", actor=f"c{i}")
                sys.exit(0)  # a normal exit: atexit flushes the child's queue
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        print("app done")
        """))
    from auditrail.exporters.otlp_json import read_records

    events = app_dir / "events.jsonl"
    done = run_app(app_dir, AUDITRAIL_EXPORTER=f"file:{events}")
    assert done.returncode == 0, done.stderr
    records = list(read_records([events]))
    tenants = sorted(r["attributes"][semconv.TENANT] for r in records if r["event_name"] != "audit.checkpoint")
    assert tenants == ["child0", "child1", "child2", "parent"]
    # each process has a chain of its own, anchored by its checkpoint at exit, and all of them verify
    from auditrail.verify import verify_records

    report = verify_records(records)
    assert report.ok, report.render()
    assert len(report.chains) == 4


@pytest.mark.parametrize("receiver_cls,protocol", [(OTLPHttpReceiver, "http/protobuf"), (OTLPGrpcReceiver, "grpc")])
def test_otlp_exporter_speaks_mtls_from_the_standard_certificate_variables(app_dir, tmp_path, receiver_cls, protocol):
    tls = make_tls_files(tmp_path / "tls")
    with receiver_cls(tls=tls) as receiver:
        done = run_app(app_dir, AUDITRAIL_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
                       OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                       OTEL_EXPORTER_OTLP_CERTIFICATE=str(tls.ca),
                       OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(tls.client_cert),
                       OTEL_EXPORTER_OTLP_CLIENT_KEY=str(tls.client_key))
        assert done.returncode == 0, done.stderr
        records = [r for r in receiver.received.log_records() if r.event_name != "audit.checkpoint"]
    assert [attrs_of(r)[semconv.TENANT] for r in records] == ["acme", "globex"]


@pytest.mark.parametrize("receiver_cls,protocol", [(OTLPHttpReceiver, "http/protobuf"), (OTLPGrpcReceiver, "grpc")])
def test_otlp_exporter_without_a_client_certificate_is_refused_and_reports_failure(tmp_path, receiver_cls, protocol,
                                                                                  monkeypatch):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from auditrail.events import AuditEvent
    from auditrail.exporters import make_exporter

    tls = make_tls_files(tmp_path / "tls")
    with receiver_cls(tls=tls) as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls.ca))  # trusts the server, has no client cert
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        exporter = make_exporter("otlp")
        try:
            ok = exporter.export_events([AuditEvent("billing.plan.change", tenant="acme")],
                                        Resource.create({}), InstrumentationScope("auditrail"))
        finally:
            exporter.shutdown()
        assert ok is False
        assert receiver.received.requests == []
