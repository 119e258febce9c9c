"""Zero-code capture: every category with its fields, import order, async, methods, failures, hygiene."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json

import pytest

from auditrail import semconv

APP = '''
import asyncio
from dataclasses import dataclass


class PromptStore:
    def __init__(self):
        self.prompts = {"acme": "You are helpful."}

    def get(self, tenant_id):
        return self.prompts.get(tenant_id)

    def update(self, tenant_id, new_text, editor, reason):
        self.prompts[tenant_id] = new_text
        return len(self.prompts)


@dataclass
class CrawlResult:
    run_id: str
    pages: int
    failed: int


async def run_crawl(tenant_id, domain, trigger="schedule"):
    await asyncio.sleep(0)
    if domain.endswith(".invalid"):
        raise ConnectionError(f"cannot reach {domain}")
    return CrawlResult(run_id="run-1", pages=42, failed=1)


class Policies:
    values = {("acme", "threshold"): 0.7}

    @classmethod
    def set(cls, tenant_id, key, value, actor, justification):
        cls.values[(tenant_id, key)] = value

    @classmethod
    def get(cls, tenant_id, key):
        return cls.values.get((tenant_id, key))


class Billing:
    plans = {"acme": "free"}

    @staticmethod
    def change_plan(tenant_id, new_plan, actor, api_key=None):
        old = Billing.plans.get(tenant_id)
        Billing.plans[tenant_id] = new_plan
        return old


def current_plan(tenant_id):
    return Billing.plans.get(tenant_id)


def start_impersonation(impersonator, user_id, tenant_id, reason):
    return {"session_id": "imp-1"}


def end_impersonation(impersonator, session_id, tenant_id):
    return None


def disable(feature, scope, reason, actor):
    return True


def edit_as(user, tenant_id, session=None):
    return "ok"
'''

CONFIG = '''
service_name: test-app
delivery: {mode: best_effort}
redact: [api_key, password]
events:
  - target: app.core:PromptStore.update
    event: prompt.update
    tenant: tenant_id
    actor: editor
    reason: reason
    before: {prompt_hash: sha256(self.get(tenant_id))}
    after: {prompt_hash: sha256(new_text), version: result}
  - target: app.core:run_crawl
    event: crawl.run
    tenant: tenant_id
    actor_type: service
    payload: {domain: domain, run_id: result.run_id, pages: result.pages, failed: result.failed, triggered_by: trigger}
  - target: app.core:Policies.set
    event: policy.update
    tenant: tenant_id
    actor: actor
    reason: justification
    before:
      value: cls.get(tenant_id, key)
    after: {value: value, key: key}
  - target: app.core:Billing.change_plan
    event: billing.plan.change
    tenant: tenant_id
    actor: actor
    before: {plan: 'call("app.core:current_plan", tenant_id)'}
    after: {plan: new_plan}
    payload: {api_key: api_key}
  - target: app.core:start_impersonation
    event: admin.impersonation.start
    tenant: tenant_id
    actor: impersonator
    reason: reason
    payload: {impersonated: user_id, session: 'result["session_id"]'}
    impersonation: {marker: 'result["session_id"]'}
  - target: app.core:end_impersonation
    event: admin.impersonation.end
    tenant: tenant_id
    actor: impersonator
    payload: {session: session_id}
  - target: app.core:disable
    event: killswitch.disable
    tenant: scope
    actor: actor
    reason: reason
    payload: {feature: feature, scope: scope}
  - target: app.core:edit_as
    event: custom.edit
    tenant: tenant_id
    actor: user
    impersonation: {marker: session}
'''


@pytest.fixture
def app(audit):
    audit.module("app.core", APP)
    audit.instrument(CONFIG)
    return importlib.import_module("app.core")


def test_prompt_update_records_previous_and_new_hash(audit, app):
    store = app.PromptStore()
    assert store.update("acme", "You are terse.", "alice@acme.io", "shorter answers") == 1
    event = audit.one("prompt.update")
    attrs = event["attrs"]
    assert attrs[semconv.TENANT] == "acme"
    assert attrs[semconv.ACTOR] == "alice@acme.io"
    assert attrs[semconv.ACTOR_TYPE] == "user"
    assert attrs[semconv.REASON] == "shorter answers"
    assert attrs[semconv.OUTCOME] == "success"
    assert attrs[semconv.RISK] == "high"
    assert event["severity"] == "WARN"
    assert event["payload"]["before"] == {"prompt_hash": hashlib.sha256(b"You are helpful.").hexdigest()}
    assert event["payload"]["after"] == {"prompt_hash": hashlib.sha256(b"You are terse.").hexdigest(), "version": 1}


def test_event_record_has_uuid7_id_scope_resource_and_ns_time(audit, app):
    import time
    import uuid

    t0 = time.time_ns()
    app.PromptStore().update("acme", "x", "alice", "r")
    event = audit.one("prompt.update")
    record = event["record"]
    assert uuid.UUID(event["attrs"][semconv.EVENT_ID]).version == 7
    assert record.instrumentation_scope.name == "auditrail"
    assert record.resource.attributes["service.name"] == "test-app"
    assert t0 <= record.log_record.timestamp <= time.time_ns()
    assert record.log_record.event_name == "prompt.update"


def test_async_crawl_run_records_domain_pages_and_trigger(audit, app):
    result = asyncio.run(app.run_crawl("acme", "docs.acme.io", trigger="indexnow"))
    assert result.pages == 42
    event = audit.one("crawl.run")
    assert event["attrs"][semconv.ACTOR_TYPE] == "service"
    assert event["attrs"][semconv.RISK] == "low"
    assert event["severity"] == "INFO"
    assert event["payload"] == {
        "domain": "docs.acme.io", "run_id": "run-1", "pages": 42, "failed": 1, "triggered_by": "indexnow",
    }


def test_failing_target_gives_failure_outcome_and_reraises_unchanged(audit, app):
    with pytest.raises(ConnectionError, match="cannot reach x.invalid") as info:
        asyncio.run(app.run_crawl("acme", "x.invalid"))
    assert type(info.value) is ConnectionError
    event = audit.one("crawl.run")
    assert event["attrs"][semconv.OUTCOME] == "failure"
    assert event["payload"]["domain"] == "x.invalid"
    assert event["payload"]["run_id"] is None  # no result after a failure
    assert event["payload"]["error"] == {"type": "ConnectionError", "message": "cannot reach x.invalid"}


def test_classmethod_policy_update_records_old_and_new_value(audit, app):
    app.Policies.set("acme", "threshold", 0.9, actor="bob", justification="fewer wrong answers")
    event = audit.one("policy.update")
    assert event["payload"]["before"] == {"value": 0.7}
    assert event["payload"]["after"] == {"value": 0.9, "key": "threshold"}
    assert event["attrs"][semconv.REASON] == "fewer wrong answers"
    assert event["attrs"][semconv.RISK] == "medium"


def test_staticmethod_billing_change_redacts_secret_keys(audit, app):
    app.Billing.change_plan("acme", "pro", "carol", api_key="sk_live_123")
    event = audit.one("billing.plan.change")
    assert event["payload"]["api_key"] == "[REDACTED]"
    assert "sk_live_123" not in event["attrs"][semconv.PAYLOAD]
    assert event["payload"]["before"] == {"plan": "free"}
    assert event["payload"]["after"] == {"plan": "pro"}


def test_killswitch_global_scope_is_star_tenant_and_critical(audit, app):
    app.disable("embed", "*", "prompt injection incident", "ops@acme.io")
    event = audit.one("killswitch.disable")
    assert event["attrs"][semconv.TENANT] == "*"
    assert event["attrs"][semconv.RISK] == "critical"
    assert event["payload"] == {"feature": "embed", "scope": "*"}


def test_impersonation_links_actions_of_the_impersonated_user_to_the_session(audit, app):
    app.start_impersonation("ops@vendor.io", "bob@globex.com", "globex", "ticket 7")
    app.edit_as("bob@globex.com", "globex", session="imp-1")  # acting as bob in the session: its marker
    app.edit_as("bob@globex.com", "globex")  # bob himself, meanwhile: no evidence, not linked
    app.edit_as("alice@acme.io", "acme")  # someone else: not linked
    app.end_impersonation("ops@vendor.io", "imp-1", "globex")
    app.edit_as("bob@globex.com", "globex", session="imp-1")  # after the end: not linked
    events = audit.events()
    assert [e["event"] for e in events] == [
        "admin.impersonation.start", "custom.edit", "custom.edit", "custom.edit", "admin.impersonation.end",
        "custom.edit",
    ]
    start, during, own, other, end, after = events
    assert semconv.IMPERSONATOR not in own["attrs"] and semconv.IMPERSONATION not in own["attrs"]
    assert start["payload"] == {"impersonated": "bob@globex.com", "session": "imp-1"}
    assert start["attrs"][semconv.IMPERSONATION] == "imp-1"
    assert semconv.IMPERSONATOR not in start["attrs"]  # the start is the impersonator's own act
    assert during["attrs"][semconv.IMPERSONATOR] == "ops@vendor.io"
    assert during["attrs"][semconv.IMPERSONATION] == "imp-1"
    assert semconv.IMPERSONATOR not in other["attrs"]
    assert end["payload"] == {"session": "imp-1", "impersonated": "bob@globex.com"}
    assert semconv.IMPERSONATOR not in after["attrs"]


def test_from_import_before_instrumenting_module_import_still_audits(audit):
    """`from m import f` in a module imported before m: the hook patches m before the name is bound."""
    audit.module("app2.target", "def act(tenant_id):\n    return 1\n")
    audit.module("app2.user", "from app2.target import act\n\ndef go():\n    return act('t-from')\n")
    audit.instrument("events:\n  - {target: app2.target:act, event: custom.act, tenant: tenant_id}\n")
    user = importlib.import_module("app2.user")
    user.go()
    target = importlib.import_module("app2.target")
    target.act("t-attr")
    assert sorted(e["attrs"][semconv.TENANT] for e in audit.events()) == ["t-attr", "t-from"]


def test_module_imported_before_instrumenting_is_patched_at_once(audit):
    audit.module("app3.target", "def act(tenant_id):\n    return 1\n")
    target = importlib.import_module("app3.target")
    audit.instrument("events:\n  - {target: app3.target:act, event: custom.act, tenant: tenant_id}\n")
    target.act("t1")
    assert audit.one("custom.act")["attrs"][semconv.TENANT] == "t1"


def test_raising_extractor_leaves_call_unharmed_and_event_emitted(audit):
    audit.module("app4.target", "def act(tenant_id, obj):\n    return 'done'\n")
    audit.instrument("""
        events:
          - target: app4.target:act
            event: custom.act
            tenant: tenant_id
            actor: obj.missing_attribute
            before: {broken: "obj['nope']", fine: tenant_id}
        """)
    target = importlib.import_module("app4.target")
    assert target.act("t1", object()) == "done"
    event = audit.one("custom.act")
    assert semconv.ACTOR not in event["attrs"]
    assert event["payload"]["before"] == {"broken": None, "fine": "t1"}
    assert event["attrs"][semconv.OUTCOME] == "success"
    from auditrail import runtime

    assert runtime.recorder.counters.extractor_errors == 2


def test_non_json_values_become_safe_strings_and_large_payloads_are_marked(audit):
    audit.module("app5.target", "def act(blob, when, thing):\n    return None\n")
    audit.instrument("""
        payload_max_bytes: 512
        events:
          - {target: app5.target:act, event: custom.act, payload: {blob: blob, when: when, thing: thing}}
        """)
    import datetime

    target = importlib.import_module("app5.target")
    target.act(b"\x00\x01", datetime.datetime(2026, 1, 2, 3, 4, 5), {1, 2})
    small = audit.events()[-1]["payload"]
    assert small == {"blob": "base64:AAE=", "when": "2026-01-02T03:04:05", "thing": [1, 2]}
    target.act("x" * 5000, None, None)
    big = audit.events()[-1]
    assert big["payload"]["_auditrail_truncated"] is True
    assert big["payload"]["original_bytes"] > 5000
    assert len(big["attrs"][semconv.PAYLOAD].encode()) <= 512


def test_nested_redaction_matches_key_variants_at_any_depth(audit):
    audit.module("app6.target", "def act(data):\n    return None\n")
    audit.instrument("redact: [api_key, password]\nevents:\n  - {target: app6.target:act, event: custom.act, payload: data}\n")
    target = importlib.import_module("app6.target")
    target.act({"user": {"Password": "hunter2", "profile": [{"apiKey": "k", "name": "n"}]}})
    payload = audit.one("custom.act")["payload"]
    assert payload == {"user": {"Password": "[REDACTED]", "profile": [{"apiKey": "[REDACTED]", "name": "n"}]}}


def test_when_condition_skips_uninteresting_calls(audit):
    audit.module("app7.target", "def act(value):\n    return value\n")
    audit.instrument("events:\n  - {target: app7.target:act, event: custom.act, when: 'value > 10', payload: {v: value}}\n")
    target = importlib.import_module("app7.target")
    target.act(5)
    target.act(50)
    assert [e["payload"] for e in audit.events()] == [{"v": 50}]


def test_uninstrument_restores_the_original_function(audit):
    audit.module("app8.target", "def act():\n    return 1\n")
    target = importlib.import_module("app8.target")
    original = target.act
    audit.instrument("events:\n  - {target: app8.target:act, event: custom.act}\n")
    assert target.act is not original
    from auditrail.instrumentor import AuditInstrumentor

    AuditInstrumentor().uninstrument()
    audit.instrumented = False
    assert target.act is original


def test_trace_context_of_the_active_span_is_attached(audit):
    from opentelemetry.sdk.trace import TracerProvider

    audit.module("app9.target", "def act():\n    return 1\n")
    audit.instrument("events:\n  - {target: app9.target:act, event: custom.act}\n")
    target = importlib.import_module("app9.target")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        target.act()
    record = audit.one("custom.act")["record"].log_record
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id


def test_context_fallbacks_from_baggage_and_the_apps_own_function(audit):
    from opentelemetry import baggage, context

    audit.module("app10.auth", "CURRENT = {'user': 'dana@acme.io'}\n\ndef current_user_id():\n    return CURRENT['user']\n")
    audit.module("app10.target", "def act():\n    return 1\n")
    audit.instrument("""
        context:
          actor: [baggage("enduser.id"), call("app10.auth:current_user_id")]
          tenant: [baggage("audit.tenant_id")]
        events:
          - {target: app10.target:act, event: custom.act}
        """)
    target = importlib.import_module("app10.target")
    target.act()  # no baggage: actor from the app's function
    token = context.attach(baggage.set_baggage("audit.tenant_id", "acme", baggage.set_baggage("enduser.id", "eve")))
    try:
        target.act()
    finally:
        context.detach(token)
    first, second = audit.events()
    assert first["attrs"][semconv.ACTOR] == "dana@acme.io"
    assert semconv.TENANT not in first["attrs"]
    assert second["attrs"][semconv.ACTOR] == "eve"
    assert second["attrs"][semconv.TENANT] == "acme"


def test_records_are_otlp_encodable(audit, app):
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    app.PromptStore().update("acme", "x", "alice", "r")
    request = encode_logs(audit.records())
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    assert request.resource_logs[0].scope_logs[0].scope.name == "auditrail"
    assert log.event_name == "prompt.update"
    keys = {kv.key for kv in log.attributes}
    assert {semconv.EVENT_ID, semconv.TENANT, semconv.ACTOR, semconv.PAYLOAD, semconv.OUTCOME, semconv.RISK} <= keys
    assert json.loads(next(kv.value.string_value for kv in log.attributes if kv.key == semconv.PAYLOAD))


def test_a_parameter_named_request_is_the_apps_own_and_still_audited(audit):
    """Targets whose parameters shadow a name of the language take the generic path: same event."""
    audit.module("app11.views", "def view(request, tenant_id):\n    return 'ok'\n")
    audit.instrument("events:\n  - {target: app11.views:view, event: custom.view, tenant: tenant_id, actor: request.user}\n")
    views = importlib.import_module("app11.views")

    class Req:
        user = "frank@acme.io"

    assert views.view(Req(), "acme") == "ok"
    event = audit.one("custom.view")
    assert event["attrs"][semconv.ACTOR] == "frank@acme.io" and event["attrs"][semconv.TENANT] == "acme"


def test_a_call_with_wrong_arguments_raises_the_apps_own_type_error(audit):
    audit.module("app12.target", "def act(tenant_id, value):\n    return value\n")
    audit.instrument("events:\n  - {target: app12.target:act, event: custom.act, tenant: tenant_id, before: {v: value}}\n")
    target = importlib.import_module("app12.target")
    with pytest.raises(TypeError, match="act\\(\\) missing 1 required positional argument: 'value'"):
        target.act("acme")
    event = audit.one("custom.act")
    assert event["attrs"][semconv.OUTCOME] == "failure"
    assert event["payload"]["error"]["type"] == "TypeError"


EQUIVALENCE_APP = '''
import asyncio


class Thing:
    def __init__(self):
        self.items = {"a": 1}

    def put(self, tenant_id, key, value, *, actor="system", role="user", secret=None, **extra):
        self.items[key] = value
        if key == "boom":
            raise KeyError(key)
        return {"key": key, "size": len(self.items), "token": "t0p", "nested": {"Api-Key": "k", "ok": [1, 2]}}

    @classmethod
    def kind(cls, tenant_id, /, label, *rest):
        return [label, *rest]


async def fetch(tenant_id, url, retries=2):
    await asyncio.sleep(0)
    return {"url": url, "pages": retries}
'''

EQUIVALENCE_YAML = """
    redact: [secret, token, api_key]
    events:
      - target: appeq.target:Thing.put
        event: policy.update
        tenant: tenant_id
        actor: actor
        actor_type: role
        reason: extra.get("why")
        approval_id: extra.get("approval")
        before: {old: self.items.get(key), secret: secret, count: len(self.items)}
        after: result
        payload: {key: key, value: value, secret: secret, extra: extra, error: str(error)}
      - target: appeq.target:Thing.kind
        event: custom.kind
        tenant: tenant_id
        when: label != "skip"
        after: {labels: result, first: "result[0]"}
        payload: rest
      - target: appeq.target:fetch
        event: crawl.run
        tenant: tenant_id
        before: {url: url}
        after: {pages: 'result["pages"]', missing: 'result["nope"]'}
    """


def _comparable(event: dict) -> dict:
    attrs = {k: v for k, v in event["attrs"].items() if k not in (semconv.EVENT_ID,) and not k.startswith("audit.chain")}
    return {"event": event["event"], "severity": event["severity"], "attrs": attrs, "payload": event["payload"]}


def _equivalence_calls(target) -> None:
    thing = target.Thing()
    thing.put("t1", "k", {"deep": {"password": "x", "Token": "y"}}, actor="ann", role="service", secret="s3",
              why="ticket-1", approval="ap-9")
    thing.put("t1", "k2", 5, role="martian")  # an actor_type outside DESIGN.md's: left empty, counted
    with pytest.raises(KeyError):
        thing.put("t2", "boom", None, actor="bob")
    with pytest.raises(TypeError):
        thing.put("t2")  # arguments the target cannot take: the app's own TypeError, and a failure event
    target.Thing.kind("t3", "x", "y", {"token": "z"})
    target.Thing.kind("t3", "skip")
    asyncio.run(target.fetch("t4", "https://example.com", retries=5))


def test_generated_and_generic_paths_record_identical_events(audit):
    """The generated call function (the hot path) and the one-by-one evaluation give the same events."""
    audit.module("appeq.target", EQUIVALENCE_APP)
    audit.instrument(EQUIVALENCE_YAML)
    target = importlib.import_module("appeq.target")
    wrappers = [target.Thing.__dict__["put"]._self_wrapper, target.Thing.__dict__["kind"]._self_wrapper,
                target.fetch._self_wrapper]
    assert all(w._gen is not None for w in wrappers)
    _equivalence_calls(target)
    generated = [_comparable(e) for e in audit.events()]
    errors = audit.counters.extractor_errors
    for wrapper in wrappers:
        wrapper._gen = None  # every call now takes the generic path
    _equivalence_calls(target)
    generic = [_comparable(e) for e in audit.events()[len(generated):]]
    assert generated == generic
    assert audit.counters.extractor_errors == 2 * errors
    first = generated[0]
    assert first["payload"]["secret"] == "[REDACTED]" and first["payload"]["before"]["secret"] == "[REDACTED]"
    assert first["payload"]["value"] == {"deep": {"password": "[REDACTED]", "Token": "[REDACTED]"}}  # built-in list
    assert first["payload"]["after"]["token"] == "[REDACTED]"
    assert first["payload"]["after"]["nested"]["Api-Key"] == "[REDACTED]"
    assert first["attrs"][semconv.ACTOR_TYPE] == "service" and first["attrs"][semconv.APPROVAL] == "ap-9"
    assert generated[1]["attrs"][semconv.ACTOR_TYPE] == "user"  # "martian" left empty: the default for a user
    assert [e["attrs"][semconv.OUTCOME] for e in generated] == ["success", "success", "failure", "failure",
                                                                "success", "success"]
    assert generated[2]["payload"]["error"] == {"type": "KeyError", "message": "'boom'"}
    assert generated[4]["payload"] == {"value": ["y", {"token": "[REDACTED]"}],
                                        "after": {"labels": ["x", "y", {"token": "[REDACTED]"}], "first": "x"}}
    assert generated[5]["payload"]["after"] == {"pages": 5, "missing": None}
