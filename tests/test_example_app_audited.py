"""The example app end to end: uvicorn under auditrail-instrument in a subprocess, driven over HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from auditrail import semconv
from auditrail.exporters.otlp_json import read_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "assistant"
sys.path.insert(0, str(EXAMPLE))
import demo  # noqa: E402
from scenario import run_scenario  # noqa: E402


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Run the whole scenario once against the audited app; return (steps, records)."""
    tmp = tmp_path_factory.mktemp("example")
    events = tmp / "events.jsonl"
    port = demo.free_port()
    # The global kill switch needs an approval: the store service is the approval service.
    service, _, app_token, desk = demo.approval_service(f"chdb://{tmp / 'store'}", tmp / "store.log")
    env = demo.app_env(tmp / "assistant.db", AUDITRAIL_EXPORTER=f"file:{events}",
                       AUDITRAIL_APPROVALS_URL=desk.base_url, AUDITRAIL_APPROVALS_TOKEN=app_token)
    proc = demo.start_server(demo.server_command(port, audit=True), env, tmp / "app.log")
    try:
        demo.wait_healthy(f"http://127.0.0.1:{port}", proc, tmp / "app.log")
        steps = run_scenario(f"http://127.0.0.1:{port}", desk)
    finally:
        demo.stop_server(proc)  # SIGTERM, as a process manager would: queued events must still be flushed
        demo.stop_server(service)
    everything = [r for r in read_records([events]) if r["scope_name"] == "auditrail"]
    for r in everything:
        r["payload"] = json.loads(r["attributes"][semconv.PAYLOAD])
    actions = [r for r in everything if r["event_name"] != "audit.checkpoint"]
    return steps, actions, everything


def test_each_tenants_events_form_a_verified_chain_anchored_by_a_final_checkpoint(captured):
    from auditrail.verify import verify_records

    _, actions, everything = captured
    report = verify_records(everything)
    assert report.ok, report.render()
    by_tenant: dict[str, list] = {}
    for record in everything:
        by_tenant.setdefault(record["attributes"]["audit.tenant_id"], []).append(record)
    assert set(by_tenant) == {"acme", "globex", "*"}  # one chain per tenant of the scenario
    assert len(report.chains) == 3
    for records in by_tenant.values():
        [chain_id] = {r["attributes"]["audit.chain.id"] for r in records}
        chain = report.chains[chain_id]
        assert chain.first_seq == 1 and chain.last_seq == len(records)
        assert records[-1]["event_name"] == "audit.checkpoint"  # written at shutdown (SIGTERM)
        assert records[-1]["payload"]["seq"] == len(records) - 1


def of_type(records, event):
    return [r for r in records if r["event_name"] == event]


def test_every_scenario_step_is_one_audit_event_and_every_category_is_covered(captured):
    steps, records, _ = captured
    # The five approval steps record 1, 0, 0, 2 and 1 events in the app (alice's approval.granted is the
    # approval service's event, in the store): one fewer than there are steps.
    assert len(records) == len(steps) - 1 == 19
    names = {r["event_name"] for r in records}
    assert names == {
        "prompt.update", "crawl.run", "policy.update", "billing.plan.change", "billing.quota.override",
        "billing.grace.start", "billing.grace.end", "admin.impersonation.start", "admin.impersonation.end",
        "killswitch.disable", "killswitch.enable", "approval.requested", "approval.used",
    }
    assert len({r["attributes"][semconv.EVENT_ID] for r in records}) == 19


def test_the_global_kill_switch_ran_once_with_its_approval(captured):
    steps, records, _ = captured
    requested = of_type(records, "approval.requested")
    assert [r["attributes"][semconv.ACTOR] for r in requested] == ["ops@vendor.io", "ops@vendor.io"]
    first = requested[0]["attributes"][semconv.APPROVAL]
    assert f"needs approval {first}" in steps[13] and "self-approval" in steps[14]
    [used] = of_type(records, "approval.used")
    assert used["attributes"][semconv.APPROVAL] == first
    disable = of_type(records, "killswitch.disable")[0]
    assert disable["attributes"][semconv.TENANT] == "*" and disable["attributes"][semconv.APPROVAL] == first
    assert requested[1]["attributes"][semconv.APPROVAL] != first  # the second retry: a new request
    assert {r["resource"]["service.name"] for r in records} == {"assistant-admin"}


def test_prompt_edits_chain_their_hashes_and_carry_editor_reason_and_client_ip(captured):
    records = captured[1]
    first, second = of_type(records, "prompt.update")
    assert first["payload"]["after"]["prompt_hash"] == second["payload"]["before"]["prompt_hash"]
    assert first["payload"]["before"]["prompt_hash"] != first["payload"]["after"]["prompt_hash"]
    attrs = first["attributes"]
    assert attrs[semconv.ACTOR] == "alice@acme.io" and attrs[semconv.TENANT] == "acme"
    assert attrs[semconv.SOURCE_IP] == "203.0.113.10"  # X-Forwarded-For through uvicorn's proxy headers
    assert attrs[semconv.REASON] and attrs[semconv.RISK] == "high" and first["severity_text"] == "WARN"


def test_crawls_record_trigger_pages_and_the_failed_run(captured):
    records = captured[1]
    crawls = of_type(records, "crawl.run")
    assert [c["payload"]["triggered_by"] for c in crawls] == ["schedule", "manual", "manual"]
    assert crawls[0]["attributes"][semconv.ACTOR_TYPE] == "service"
    assert crawls[1]["payload"]["pages_crawled"] > 0
    failed = crawls[2]
    assert failed["attributes"][semconv.OUTCOME] == "failure"
    assert failed["payload"]["domain"].endswith(".invalid")
    assert failed["payload"]["error"]["type"] == "CrawlError"


def test_billing_and_policy_edits_carry_before_and_after(captured):
    records = captured[1]
    plan = of_type(records, "billing.plan.change")[0]["payload"]
    assert plan["before"]["plan"] != plan["after"]["plan"]
    quota = of_type(records, "billing.quota.override")[0]["payload"]
    assert quota["before"]["quota"] != quota["after"]["quota"]
    grace_start = of_type(records, "billing.grace.start")[0]["payload"]
    grace_end = of_type(records, "billing.grace.end")[0]["payload"]
    assert grace_start["after"]["grace_until"] == grace_end["before"]["grace_until"] is not None
    assert grace_end["after"]["grace_until"] is None
    policy = of_type(records, "policy.update")[0]
    assert policy["payload"]["before"]["value"] != policy["payload"]["after"]["value"]
    assert policy["attributes"][semconv.REASON]


def test_actions_while_impersonating_are_linked_to_the_session(captured):
    records = captured[1]
    start = of_type(records, "admin.impersonation.start")[0]
    end = of_type(records, "admin.impersonation.end")[0]
    session = start["payload"]["session"]
    assert start["attributes"][semconv.ACTOR] == "ops@vendor.io"
    assert start["payload"]["impersonated"] == "bob@acme.io"
    assert end["payload"]["session"] == session
    linked = [r for r in records if r["attributes"].get(semconv.IMPERSONATION) == session
              and r["event_name"] not in ("admin.impersonation.start", "admin.impersonation.end")]
    assert [r["event_name"] for r in linked] == ["policy.update"]
    assert linked[0]["attributes"][semconv.ACTOR] == "bob@acme.io"
    assert linked[0]["attributes"][semconv.IMPERSONATOR] == "ops@vendor.io"
    assert linked[0]["attributes"][semconv.TENANT] == "globex"


def test_kill_switches_record_scope_feature_and_global_tenant(captured):
    records = captured[1]
    disables = of_type(records, "killswitch.disable")
    assert [d["attributes"][semconv.TENANT] for d in disables] == ["*", "globex"]
    assert disables[0]["payload"]["feature"] == "embed" and disables[0]["payload"]["scope"] == "*"
    assert disables[0]["attributes"][semconv.RISK] == "critical"
    assert disables[0]["payload"]["before"]["state"] != disables[0]["payload"]["after"]["state"]
    assert of_type(records, "killswitch.enable")[0]["attributes"][semconv.REASON]
