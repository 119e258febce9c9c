"""The programmatic API: emit, @audited, audit_context, impersonation."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

import auditrail
from auditrail import semconv
from auditrail.config import AuditConfig


@pytest.fixture
def exporter():
    exp = InMemoryLogRecordExporter()
    auditrail.configure(AuditConfig(service_name="api-test", redact=["secret"]), exporter=exp)
    yield exp
    auditrail.shutdown()


def events(exporter):
    assert auditrail.flush(10)
    return [(r.log_record.event_name, dict(r.log_record.attributes)) for r in exporter.get_finished_logs()]


def test_emit_records_an_event_with_before_after_and_returns_its_id(exporter):
    event_id = auditrail.emit("billing.quota.override", tenant="acme", actor="ops@acme.io", reason="launch week",
                              before={"quota": 1000}, after={"quota": 5000}, source_ip="203.0.113.7",
                              payload={"secret": "s3cr3t", "ticket": "T-1"})
    [(name, attrs)] = events(exporter)
    assert name == "billing.quota.override"
    assert attrs[semconv.EVENT_ID] == event_id
    assert attrs[semconv.SOURCE_IP] == "203.0.113.7"
    assert attrs[semconv.RISK] == "medium"
    assert json.loads(attrs[semconv.PAYLOAD]) == {
        "secret": "[REDACTED]", "ticket": "T-1", "before": {"quota": 1000}, "after": {"quota": 5000},
    }


def test_emit_with_bad_risk_or_outcome_logs_and_still_records(exporter, caplog):
    auditrail.emit("custom.thing", risk="extreme", outcome="meh")
    [(_, attrs)] = events(exporter)
    assert attrs[semconv.RISK] == "medium" and attrs[semconv.OUTCOME] == "failure"
    assert "risk 'extreme'" in caplog.text and "outcome 'meh'" in caplog.text


def test_audit_context_sets_actor_tenant_and_source_ip_for_the_block(exporter):
    with auditrail.audit_context(actor="alice", tenant="acme", source_ip="198.51.100.1"):
        auditrail.emit("custom.inside")
        with auditrail.audit_context(tenant="globex"):
            auditrail.emit("custom.nested")
    auditrail.emit("custom.outside")
    inside, nested, outside = (attrs for _, attrs in events(exporter))
    assert (inside[semconv.ACTOR], inside[semconv.TENANT], inside[semconv.SOURCE_IP]) == ("alice", "acme", "198.51.100.1")
    assert (nested[semconv.ACTOR], nested[semconv.TENANT]) == ("alice", "globex")
    assert semconv.ACTOR not in outside and outside[semconv.ACTOR_TYPE] == "system"


def test_audited_decorator_on_functions_methods_and_coroutines(exporter):
    class Prompts:
        text = "old"

        @auditrail.audited("prompt.update", tenant="tenant_id", actor="editor",
                           before={"prompt_hash": "sha256(self.text)"}, after={"prompt_hash": "sha256(new_text)"})
        def update(self, tenant_id, new_text, editor):
            self.text = new_text

    @auditrail.audited("crawl.run", tenant="tenant_id", payload={"domain": "domain", "pages": "result"})
    async def crawl(tenant_id, domain):
        return 7

    @auditrail.audited("killswitch.disable", tenant="scope", payload={"scope": "scope"})
    def disable(scope):
        raise PermissionError("not allowed")

    Prompts().update("acme", "new", editor="bob")
    assert asyncio.run(crawl("acme", "docs.acme.io")) == 7
    with pytest.raises(PermissionError):
        disable("*")
    (n1, a1), (n2, a2), (n3, a3) = events(exporter)
    assert n1 == "prompt.update" and a1[semconv.ACTOR] == "bob" and a1[semconv.RISK] == "high"
    payload = json.loads(a1[semconv.PAYLOAD])
    assert payload["before"]["prompt_hash"] != payload["after"]["prompt_hash"]
    assert n2 == "crawl.run" and json.loads(a2[semconv.PAYLOAD]) == {"domain": "docs.acme.io", "pages": 7}
    assert n3 == "killswitch.disable" and a3[semconv.OUTCOME] == "failure" and a3[semconv.TENANT] == "*"


def test_audited_decorator_rejects_bad_expressions_at_decoration_time():
    from auditrail.config import ConfigError

    with pytest.raises(ConfigError, match=r"@audited at .*tenant: bad expression"):
        @auditrail.audited("custom.x", tenant="a.__dict__")
        def f(a):
            pass


def test_impersonation_context_links_every_event_inside_to_the_session(exporter):
    with auditrail.impersonation("ops@vendor.io", "bob@globex.com", tenant="globex", reason="ticket 7") as session:
        auditrail.emit("policy.update", before={"v": 1}, after={"v": 2})
    auditrail.emit("policy.update", tenant="globex", actor="bob@globex.com")
    start, inside, end, after = events(exporter)
    assert start[0] == "admin.impersonation.start" and end[0] == "admin.impersonation.end"
    assert start[1][semconv.ACTOR] == "ops@vendor.io"
    assert json.loads(start[1][semconv.PAYLOAD]) == {"impersonated": "bob@globex.com", "session": session}
    assert inside[1][semconv.ACTOR] == "bob@globex.com"
    assert inside[1][semconv.IMPERSONATOR] == "ops@vendor.io"
    assert inside[1][semconv.IMPERSONATION] == session
    assert semconv.IMPERSONATOR not in after[1]
    assert start[1][semconv.RISK] == "critical"


def test_audit_records_do_not_reach_the_global_logger_provider(exporter):
    from opentelemetry import _logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    app_logs = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(app_logs))
    _logs.set_logger_provider(provider)
    auditrail.emit("custom.thing")
    assert len(events(exporter)) == 1
    assert app_logs.get_finished_logs() == ()


def test_exporter_failure_is_retried_until_it_succeeds():
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    class Flaky(InMemoryLogRecordExporter):
        calls = 0

        def export(self, batch):
            self.calls += 1
            if self.calls <= 2:
                return LogRecordExportResult.FAILURE
            return super().export(batch)

    flaky = Flaky()
    recorder = auditrail.configure(AuditConfig(), exporter=flaky)
    recorder.provider.max_backoff = 0.2
    try:
        auditrail.emit("custom.thing")
        assert auditrail.flush(10)
        assert len(flaky.get_finished_logs()) == 1 and flaky.calls == 3
    finally:
        auditrail.shutdown()


def test_audit_logger_provider_carries_raw_otel_records_on_the_audit_channel(exporter):
    from opentelemetry._logs import LogRecord

    from auditrail import runtime

    provider = runtime.recorder.provider
    provider.get_logger("myapp.audit").emit(LogRecord(body="raw record", attributes={"k": "v"}))
    [record] = exporter.get_finished_logs()
    assert record.log_record.body == "raw record"
    assert record.instrumentation_scope.name == "myapp.audit"
    assert record.resource.attributes["service.name"] == "api-test"
