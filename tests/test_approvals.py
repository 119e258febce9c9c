"""Dual approval of sensitive actions: the gate in the app, the service's rules, single use under a race.

Real parts: `auditrail serve` on embedded chDB in a subprocess, tokens made by the CLI, the app's target
patched from audit.yaml text by the real instrumentor, approval.* events exported by the real pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import auditrail
from auditrail import ApprovalRequired, ApprovalUnavailable
from auditrail_store.db import TENANT_PATTERN

from test_store_service import cli, free_port, start_service, stop, token_of

APP = """
    LOG = []

    def disable(tenant_id, feature, actor, reason=""):
        LOG.append((tenant_id, feature, actor))
        return "off"

    def disable_quick(tenant_id, feature, actor):
        LOG.append((tenant_id, feature, actor))
        return "off"

    def toggle(tenant_id, feature, actor):
        LOG.append((tenant_id, feature, actor))
        return "off"

    def double(tenant_id, feature, actor):
        LOG.append((tenant_id, feature, actor))
        return "off"

    async def disable_async(tenant_id, feature, actor):
        LOG.append((tenant_id, feature, actor))
        return "off"

    def plain(tenant_id, feature, actor):
        LOG.append(("plain", feature))
        return "on"
"""

CONFIG = """
    service_name: approvals-test
    delivery: {mode: best_effort}
    approvals: {url: "URL", token: "${env:APV_TEST_TOKEN}"}
    events:
      - target: apv.ops:disable
        event: killswitch.disable
        tenant: tenant_id
        actor: actor
        reason: reason
        payload: {feature: feature, scope: tenant_id}
        before: {state: "'on'"}
        approval: {approvers: 1, ttl: 1h}
      - target: apv.ops:disable_quick
        event: killswitch.disable
        tenant: tenant_id
        actor: actor
        payload: {feature: feature, scope: tenant_id}
        approval: {approvers: 1, ttl: 2s, bind: [feature, tenant_id]}
      - target: apv.ops:toggle
        event: killswitch.disable
        tenant: tenant_id
        actor: actor
        payload: {feature: feature, scope: tenant_id}
        approval: {when: 'tenant_id == "*"'}
      - target: apv.ops:double
        event: killswitch.disable
        tenant: tenant_id
        actor: actor
        payload: {feature: feature, scope: tenant_id}
        approval: {approvers: 2}
      - target: apv.ops:disable_async
        event: killswitch.disable
        tenant: tenant_id
        actor: actor
        payload: {feature: feature, scope: tenant_id}
        approval: {approvers: 1}
      - target: apv.ops:plain
        event: killswitch.enable
        tenant: tenant_id
        actor: actor
        payload: {feature: feature, scope: tenant_id}
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("approvals")
    process, base, env = start_service(tmp)
    try:
        def token(tenant: str, scope: str, who: str = "") -> str:
            return token_of(cli("tokens", "create", "--tenant", tenant, "--scope", scope, "--description", who, env=env))

        yield {"base": base, "env": env, "app": token("*", "ingest"),
               "alice": token("*", "approve", "alice@acme.io"), "ops": token("*", "approve", "ops@vendor.io"),
               "bob_acme": token("acme", "approve", "bob@acme.io"),
               "carol_globex": token("globex", "approve", "carol@globex.com"),
               "read_acme": token("acme", "read", "auditor"), "admin": token("*", "admin")}
    finally:
        stop(process)


@pytest.fixture
def app(audit: Any, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("APV_TEST_TOKEN", service["app"])
    audit.module("apv.ops", APP)
    audit.instrument(CONFIG.replace("URL", service["base"]))
    import apv.ops

    return apv.ops


def decide(service: dict[str, Any], who: str, approval_id: str, verb: str = "approve", **body: Any) -> httpx.Response:
    return httpx.post(f"{service['base']}/v1/approvals/{approval_id}/{verb}", json={"reason": "ok", **body},
                      headers={"Authorization": f"Bearer {service[who]}"}, timeout=30)


def stored(service: dict[str, Any], tenant: str, event: str, approval_id: str, timeout: float = 20) -> dict[str, Any]:
    """The service's own event about `approval_id`, once its drain wrote it into the store."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{service['base']}/v1/tenants/{tenant}/events", params={"type": event, "format": "json"},
                         headers={"Authorization": f"Bearer {service['admin']}"}, timeout=30).json()
        found = [r for r in (rows["events"] if isinstance(rows, dict) else rows) if r["approval_id"] == approval_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{event} of {approval_id}: {found}"
            return found[0]
        time.sleep(0.3)


def ask(fn: Any, *args: Any, **kwargs: Any) -> ApprovalRequired:
    with pytest.raises(ApprovalRequired) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_the_first_call_creates_a_request_and_the_target_does_not_run(app: Any, audit: Any,
                                                                       service: dict[str, Any]) -> None:
    refused = ask(app.disable, "acme", "embed", "ops@vendor.io", reason="incident 7")
    assert app.LOG == []  # refused before the target ran
    assert refused.approval_id and refused.url == f"{service['base']}/approvals/{refused.approval_id}"
    assert refused.to_dict()["approval_id"] == refused.approval_id
    requested = audit.one("approval.requested")
    assert requested["attrs"]["audit.approval.id"] == refused.approval_id
    assert requested["attrs"]["enduser.id"] == "ops@vendor.io" and requested["attrs"]["audit.tenant_id"] == "acme"
    assert requested["payload"]["bound"] == {"actor": "ops@vendor.io", "feature": "embed", "reason": "incident 7",
                                             "tenant_id": "acme"}
    assert audit.events("killswitch.disable") == []
    # The same call again before anyone decided: the same pending request, no second one.
    again = ask(app.disable, "acme", "embed", "ops@vendor.io", reason="incident 7")
    assert again.approval_id == refused.approval_id and len(audit.events("approval.requested")) == 1
    shown = httpx.get(f"{service['base']}/v1/approvals/{refused.approval_id}",
                      headers={"Authorization": f"Bearer {service['alice']}"}).json()
    assert shown["state"] == "pending" and shown["before"] == {"state": "on"} and shown["requester"] == "ops@vendor.io"


def test_a_granted_approval_runs_the_call_once_and_its_event_carries_the_id(app: Any, audit: Any,
                                                                            service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "search", "ops@vendor.io").approval_id
    answer = decide(service, "alice", approval_id)
    assert answer.status_code == 200 and answer.json()["state"] == "granted", answer.text
    assert app.disable("acme", "search", "ops@vendor.io") == "off"
    assert app.LOG == [("acme", "search", "ops@vendor.io")]
    event = audit.one("killswitch.disable")
    assert event["attrs"]["audit.approval.id"] == approval_id
    used = audit.one("approval.used")
    # The decision: recorded by the service when it was made, in its chain of the tenant, with no client address.
    granted = stored(service, "acme", "approval.granted", approval_id)
    assert granted["actor"] == "alice@acme.io" and granted["reason"] == "ok" and granted["risk"] == "low"
    assert not granted["source_ip"] and granted["payload"]["requester"] == "ops@vendor.io"
    import time

    for _ in range(40):  # each decision is followed by a signed checkpoint of the service's chain
        verified = httpx.get(f"{service['base']}/v1/tenants/acme/verify",
                             headers={"Authorization": f"Bearer {service['admin']}"}, timeout=60).json()
        if verified["ok"]:
            break
        time.sleep(0.3)
    assert verified["ok"], verified
    assert any(c["checkpoints"] >= 1 for c in verified["chains"])
    with auditrail.audit_context(source_ip="192.0.2.50"):
        approval_id_2 = ask(app.disable, "acme", "search-ip", "ops@vendor.io").approval_id
        assert decide(service, "alice", approval_id_2).status_code == 200
        app.disable("acme", "search-ip", "ops@vendor.io")
    used_2 = [e for e in audit.events("approval.used") if e["attrs"]["audit.approval.id"] == approval_id_2][0]
    assert used_2["attrs"]["client.address"] == "192.0.2.50"  # the requester's own act, from their address
    assert used["attrs"]["enduser.id"] == "ops@vendor.io" and used["attrs"]["audit.approval.id"] == approval_id
    # Single use: the next identical call needs a new approval.
    second = ask(app.disable, "acme", "search", "ops@vendor.io")
    assert second.approval_id != approval_id and len(app.LOG) == 2
    assert decide(service, "alice", approval_id).status_code == 409  # used: nothing left to decide


def test_an_approval_binds_the_arguments(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "crawl", "ops@vendor.io").approval_id
    assert decide(service, "alice", approval_id).status_code == 200
    other = ask(app.disable, "acme", "billing", "ops@vendor.io")  # another feature: not approved
    assert other.approval_id != approval_id and app.LOG == []
    other_tenant = ask(app.disable, "globex", "crawl", "ops@vendor.io")
    assert other_tenant.approval_id != approval_id and app.LOG == []
    someone_else = ask(app.disable, "acme", "crawl", "mallory@acme.io")  # the requester is bound too
    assert someone_else.approval_id != approval_id and app.LOG == []
    app.disable("acme", "crawl", "ops@vendor.io")  # the approved one still is
    assert app.LOG == [("acme", "crawl", "ops@vendor.io")]


def test_single_use_holds_when_retries_race(app: Any, audit: Any, service: dict[str, Any]) -> None:
    for round_ in range(3):
        feature = f"race-{round_}"
        approval_id = ask(app.disable, "acme", feature, "ops@vendor.io").approval_id
        assert decide(service, "alice", approval_id).status_code == 200
        barrier = threading.Barrier(4)
        outcomes: list[str] = []

        def retry(barrier: threading.Barrier = barrier, feature: str = feature,
                  outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                app.disable("acme", feature, "ops@vendor.io")
                outcomes.append("ran")
            except ApprovalRequired:
                outcomes.append("refused")

        threads = [threading.Thread(target=retry) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes) == ["ran", "refused", "refused", "refused"], outcomes
        ran = [e for e in audit.events("killswitch.disable") if e["payload"]["feature"] == feature]
        assert len(ran) == 1 and ran[0]["attrs"]["audit.approval.id"] == approval_id


def test_an_approval_expires(app: Any, audit: Any, service: dict[str, Any]) -> None:
    first = ask(app.disable_quick, "acme", "voice", "ops@vendor.io").approval_id
    assert decide(service, "alice", first).status_code == 200
    import time

    time.sleep(2.5)  # ttl: 2s
    second = ask(app.disable_quick, "acme", "voice", "ops@vendor.io")
    assert second.approval_id != first and app.LOG == []
    expired = stored(service, "acme", "approval.expired", first)
    assert expired["actor"] in (None, "") and expired["actor_type"] == "system"
    late = ask(app.disable_quick, "acme", "voice2", "ops@vendor.io").approval_id
    time.sleep(2.5)
    assert decide(service, "alice", late).status_code == 409  # too late to approve


def test_bind_names_what_is_bound(app: Any, service: dict[str, Any]) -> None:
    # bind: [feature, tenant_id]: the actor is not bound, but the requester always is.
    approval_id = ask(app.disable_quick, "acme", "bind", "ops@vendor.io").approval_id
    shown = httpx.get(f"{service['base']}/v1/approvals/{approval_id}",
                      headers={"Authorization": f"Bearer {service['alice']}"}).json()
    assert shown["bound"] == {"feature": "bind", "tenant_id": "acme"}


def test_a_denied_request_is_recorded_and_the_action_needs_a_new_one(app: Any, audit: Any,
                                                                    service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "denied", "ops@vendor.io").approval_id
    answer = decide(service, "alice", approval_id, "deny", reason="not during the sale")
    assert answer.status_code == 200 and answer.json()["state"] == "denied"
    again = ask(app.disable, "acme", "denied", "ops@vendor.io")
    assert again.approval_id != approval_id and app.LOG == []
    assert audit.events("approval.denied") == []  # the app does not record the service's decisions again
    denied = stored(service, "acme", "approval.denied", approval_id)  # recorded when it was decided
    assert denied["actor"] == "alice@acme.io" and denied["reason"] == "not during the sale"


def test_self_approval_and_the_impersonators_approval_are_refused(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "self", "ops@vendor.io").approval_id
    refused = decide(service, "ops", approval_id)
    assert refused.status_code == 403 and "self-approval" in refused.json()["detail"]
    # An admin token must name the person, and that person may not be the requester either.
    assert decide(service, "admin", approval_id).status_code == 403
    assert decide(service, "admin", approval_id, approver="OPS@vendor.io").status_code == 403
    # A blank approver or reason is refused by the schema the document publishes (422), never a 400 after it.
    for body in ({"approver": "\r"}, {"approver": " \t"}, {"approver": "alice@acme.io", "reason": "\n"}):
        assert decide(service, "admin", approval_id, **body).status_code == 422, body
    # An approve token may not decide as someone else.
    assert decide(service, "ops", approval_id, approver="alice@acme.io").status_code == 403
    # ops impersonates bob: bob's request may not be approved by ops.
    with auditrail.impersonation("ops@vendor.io", "bob@acme.io", tenant="acme", reason="ticket 9"):
        inside = ask(app.disable, "acme", "imp", "bob@acme.io").approval_id
    shown = decide(service, "ops", inside)
    assert shown.status_code == 403 and "impersonating" in shown.json()["detail"]
    assert app.LOG == []


def test_approvers_hold_the_approve_scope_of_the_tenant(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "scope", "ops@vendor.io").approval_id
    assert decide(service, "carol_globex", approval_id).status_code == 404  # another tenant's: not even seen
    assert decide(service, "read_acme", approval_id).status_code == 403  # read is not approve
    assert decide(service, "app", approval_id).status_code == 403  # nor is the app's own ingest token
    # The app's ingest token reads no approvals (it asks again to poll): 403, not the 404 of an unseen id.
    shown = {who: httpx.get(f"{service['base']}/v1/approvals/{approval_id}",
                            headers={"Authorization": f"Bearer {service[who]}"}).status_code
             for who in ("app", "carol_globex", "read_acme")}
    assert shown == {"app": 403, "carol_globex": 404, "read_acme": 200}
    # The schema says what is refused: an empty reason, a tenant outside the tenant id syntax (422, not 400).
    assert decide(service, "bob_acme", approval_id, reason="").status_code == 422
    assert decide(service, "bob_acme", approval_id).status_code == 200
    listed = httpx.get(f"{service['base']}/v1/approvals", params={"tenant": "globex"},
                       headers={"Authorization": f"Bearer {service['bob_acme']}"})
    assert listed.status_code == 403
    too_long = httpx.get(f"{service['base']}/v1/approvals", params={"tenant": "a" * 300},
                         headers={"Authorization": f"Bearer {service['admin']}"})
    assert too_long.status_code == 422


@pytest.mark.parametrize("tenant", [" ", "a b", "=cmd()", "acme/../globex", "x" * 129, ""])
def test_an_ask_for_a_tenant_outside_the_tenant_id_syntax_is_refused(service: dict[str, Any], tenant: str) -> None:
    """The tenant of an approval request follows the one tenant id syntax, as tokens, ingest and paths do."""
    body = {"digest": "c" * 64, "event": "killswitch.disable", "target": "m:f", "tenant": tenant, "requester": "u"}
    response = httpx.post(f"{service['base']}/v1/approvals", json=body,
                          headers={"Authorization": f"Bearer {service['app']}"}, timeout=30)
    assert response.status_code == 422, response.text
    assert "tenant" in response.text
    schema = httpx.get(f"{service['base']}/openapi.json").json()["components"]["schemas"]["ApprovalAsk"]
    assert any(choice.get("pattern") == TENANT_PATTERN for choice in schema["properties"]["tenant"]["anyOf"])


def test_a_call_without_approval_is_untouched(app: Any, audit: Any) -> None:
    assert app.plain("acme", "x", "ops@vendor.io") == "on"
    event = audit.one("killswitch.enable")
    assert "audit.approval.id" not in event["attrs"]


def test_fail_closed_when_the_service_cannot_be_reached(audit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APV_TEST_TOKEN", "art_0000000000000000_" + "x" * 43)
    audit.module("apv.ops", APP)
    audit.instrument(CONFIG.replace("URL", f"http://127.0.0.1:{free_port()}"))
    import apv.ops

    with pytest.raises(ApprovalUnavailable) as caught:
        apv.ops.disable("acme", "embed", "ops@vendor.io")
    assert "cannot be reached" in str(caught.value) and apv.ops.LOG == []
    assert isinstance(caught.value, auditrail.AuditUnavailable)


def test_the_cli_lists_approves_and_refuses_self_approval(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "cli", "ops@vendor.io").approval_id
    env = service["env"]
    listed = cli("approvals", "list", "--tenant", "acme", "--state", "pending", env=env)
    assert approval_id in listed.stdout and "killswitch.disable" in listed.stdout
    refused = cli("approvals", "approve", approval_id, "--reason", "mine", "--as", "ops@vendor.io", env=env, check=False)
    assert refused.returncode == 1 and "self-approval" in refused.stderr
    done = cli("approvals", "approve", approval_id, "--reason", "checked the runbook", "--as", "alice@acme.io", env=env)
    assert f"{approval_id}: granted" in done.stdout
    by_token = cli("approvals", "list", "--state", "granted", "--service", service["base"], "--token",
                   service["bob_acme"], env=env)
    assert approval_id in by_token.stdout
    app.disable("acme", "cli", "ops@vendor.io")
    assert app.LOG == [("acme", "cli", "ops@vendor.io")]


def test_when_limits_approval_to_the_calls_it_names(app: Any, audit: Any) -> None:
    assert app.toggle("acme", "embed", "ops@vendor.io") == "off"  # a tenant's switch: no approval needed
    assert "audit.approval.id" not in audit.one("killswitch.disable")["attrs"]
    refused = ask(app.toggle, "*", "embed", "ops@vendor.io")  # the global one needs it
    assert refused.approval_id and app.LOG == [("acme", "embed", "ops@vendor.io")]


@pytest.mark.parametrize(("approval", "message"), [
    ("{approvers: 0}", "approval.approvers: must be a whole number"),
    ("{ttl: soon}", "approval.ttl: must be a duration"),
    ("{ttl: 30d}", "at most 7d"),
    ("{bind: [result]}", "uses result/error"),
    ("{when: 'error is None'}", "uses result/error"),
    ("{approver: 1}", "unknown key 'approver'"),
])
def test_bad_approval_keys_are_refused_at_load_with_their_place(approval: str, message: str) -> None:
    from auditrail.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(f"events:\n  - target: m:f\n    event: a.b\n    approval: {approval}\n", filename="audit.yaml")
    assert message in str(caught.value) and "audit.yaml:4:" in str(caught.value)


def test_durations() -> None:
    from auditrail.approvals import parse_duration

    assert [parse_duration(t) for t in ("90", "30s", "15m", "1h", "2d", "1h30m", 45)] == [
        None, 30, 900, 3600, 172800, 5400, 45]
    assert parse_duration("1x") is None and parse_duration("") is None and parse_duration(0) is None


def test_an_approval_without_the_service_is_warned_at_load() -> None:
    from auditrail.config import ConfigWarning, parse_config

    with pytest.warns(ConfigWarning, match=r"audit.yaml:2: `approval:` needs the approval service"):
        parse_config("events:\n  - target: m:f\n    event: a.b\n    approval: {ttl: 1h}\n", filename="audit.yaml")


def test_a_bound_value_that_cannot_be_read_refuses_the_call(audit: Any, service: dict[str, Any],  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("APV_TEST_TOKEN", service["app"])
    audit.module("apv.ops", APP)
    audit.instrument(CONFIG.replace("URL", service["base"]).replace("bind: [feature, tenant_id]",
                                                                     "bind: [feature.missing, tenant_id, nope]"))
    import apv.ops

    assert "approval expression 'nope' uses nope, which apv.ops:disable_quick does not have" in caplog.text
    with pytest.raises(ApprovalUnavailable, match="bound value 'feature.missing' cannot be read"):
        apv.ops.disable_quick("acme", "embed", "ops@vendor.io")
    assert apv.ops.LOG == []


def test_two_approvers_are_two_different_people(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.double, "acme", "two", "ops@vendor.io").approval_id
    first = decide(service, "alice", approval_id)
    assert first.status_code == 200 and first.json()["state"] == "pending"
    assert ask(app.double, "acme", "two", "ops@vendor.io").approval_id == approval_id  # one of two: still waits
    assert decide(service, "alice", approval_id).status_code == 409  # the same person twice
    second = decide(service, "bob_acme", approval_id)
    assert second.status_code == 200 and second.json()["state"] == "granted"
    assert second.json()["approved_by"] == ["alice@acme.io", "bob@acme.io"]
    app.double("acme", "two", "ops@vendor.io")
    assert app.LOG == [("acme", "two", "ops@vendor.io")]


def test_the_openapi_document_lists_every_approvals_response(service: dict[str, Any]) -> None:
    paths = httpx.get(f"{service['base']}/openapi.json").json()["paths"]
    ask_responses = paths["/v1/approvals"]["post"]["responses"]
    assert {"200", "201", "202", "401", "403", "422"} <= set(ask_responses)
    for path in ("/v1/approvals/{approval_id}/approve", "/v1/approvals/{approval_id}/deny"):
        assert {"200", "401", "403", "404", "409", "422"} <= set(paths[path]["post"]["responses"])
    assert "/approvals" not in paths  # the page is HTML for people, not part of the API


def test_an_async_target_waits_for_its_approval_off_the_event_loop(app: Any, audit: Any,
                                                                  service: dict[str, Any]) -> None:
    import asyncio

    async def scenario() -> str:
        ticks = 0

        async def ticker() -> None:  # the loop keeps running while the gate asks the service
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        try:
            with pytest.raises(ApprovalRequired) as caught:
                await app.disable_async("acme", "async", "ops@vendor.io")
            assert ticks > 1 and app.LOG == []
            assert decide(service, "alice", str(caught.value.approval_id)).status_code == 200
            return await app.disable_async("acme", "async", "ops@vendor.io")
        finally:
            task.cancel()

    assert asyncio.run(scenario()) == "off"
    assert app.LOG == [("acme", "async", "ops@vendor.io")]
    assert audit.one("killswitch.disable")["attrs"]["audit.approval.id"]


def test_the_digest_is_keyed_so_it_reveals_no_bound_value() -> None:
    import hashlib

    from auditrail.approvals import _canonical, binding_digest

    args = ("billing.update", "m:f", "acme", "ops@vendor.io", {"api_key": "sk_live_1234"})
    keyed = binding_digest(*args, key=b"art_token")
    assert keyed == binding_digest(*args, key=b"art_token")  # the same action, the same digest
    assert keyed != binding_digest(*args, key=b"another")
    plain = hashlib.sha256(_canonical({"event": args[0], "target": args[1], "tenant": args[2],
                                       "requester": args[3], "bound": args[4]})).hexdigest()
    assert keyed != plain  # a guess of the bound values cannot be checked without the app's token


def test_the_approval_store_over_clickhouse_http(tmp_path: Path) -> None:
    """The same SQL through clickhouse-connect over http:// (server-side bound parameters), racing claims."""
    from auditrail_store.approvals.store import ApprovalStore
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate
    from clickhouse_http import ClickHouseHTTPFixture

    ask_body = {"digest": "b" * 64, "event": "killswitch.disable", "target": "m:f", "tenant": "acme",
                "requester": "ops@vendor.io", "impersonator": None, "bound": {"feature": "embed"},
                "before": {"state": "on"}, "reason": "x", "approvers": 1, "ttl_seconds": 600}
    with ClickHouseHTTPFixture(tmp_path / "clickhouse") as clickhouse, Store.open(clickhouse.url) as store:
        migrate(store)
        approvals = ApprovalStore(store)
        status, created = approvals.submit(ask_body, "token:app")
        assert status == 201 and approvals.submit(ask_body, "token:app")[0] == 202
        granted = approvals.decide(created.approval_id, "alice@acme.io", True, "ok", lambda tenant: tenant == "acme")
        assert granted.state == "granted" and granted.approvers_so_far == ["alice@acme.io"]
        statuses: list[int] = []
        barrier = threading.Barrier(4)

        def claim() -> None:
            barrier.wait()
            statuses.append(approvals.submit(ask_body, "token:app")[0])

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(statuses) == [200, 201, 202, 202], statuses  # one claim; then a new request, pending
        assert approvals.get(created.approval_id).state == "used"
        assert [a.state for a in approvals.list("acme")] == ["pending", "used"]


def test_what_the_approver_sees_has_its_secrets_scrubbed(app: Any, service: dict[str, Any]) -> None:
    approval_id = ask(app.disable, "acme", "secrets", "ops@vendor.io",
                      reason="rotate it: api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc").approval_id
    shown = httpx.get(f"{service['base']}/v1/approvals/{approval_id}",
                      headers={"Authorization": f"Bearer {service['alice']}"}).text
    assert "sk_live_4eC39HqLyjWDarjtT1zdp7dc" not in shown and "rotate it" in shown
