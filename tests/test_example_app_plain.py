"""The example app (examples/assistant) on its own, without auditrail: its business behaviour and its scenario."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "assistant"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from assistant import auth, crawler  # noqa: E402
from assistant.app import app  # noqa: E402
from assistant.policies import PolicyStore  # noqa: E402


def _load(name: str) -> ModuleType:
    """Import examples/assistant/<name>.py under a private module name (no clash with other `demo`s)."""
    spec = importlib.util.spec_from_file_location(f"assistant_example_{name}", EXAMPLE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_(who: str, **headers: str) -> dict[str, str]:
    """Headers of a request made by one of the seeded people."""
    return {"Authorization": f"Bearer tok-{who}", **headers}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app on a fresh database under tmp_path."""
    monkeypatch.setenv("ASSISTANT_DB", str(tmp_path / "assistant.db"))
    with TestClient(app) as test_client:
        yield test_client


def test_database_is_created_at_assistant_db(client: TestClient, tmp_path: Path) -> None:
    assert (tmp_path / "assistant.db").exists()
    assert client.get("/healthz").json() == {"status": "ok"}


def test_prompt_edits_create_consecutive_versions(client: TestClient) -> None:
    seeded = client.get("/tenants/acme/prompt", headers=as_("bob")).json()
    first = client.put("/tenants/acme/prompt", json={"text": "Be brief.", "reason": "CS-1"}, headers=as_("alice"))
    second = client.put("/tenants/acme/prompt", json={"text": "Be briefer.", "reason": "CS-2"}, headers=as_("bob"))
    assert first.status_code == second.status_code == 200
    assert [first.json()["version"], second.json()["version"]] == [seeded["version"] + 1, seeded["version"] + 2]
    current = client.get("/tenants/acme/prompt", headers=as_("alice")).json()
    assert (current["text"], current["editor"], current["reason"]) == ("Be briefer.", "bob@acme.io", "CS-2")
    # globex's prompt is untouched
    assert client.get("/tenants/globex/prompt", headers=as_("carol")).json()["version"] == 1


def test_missing_token_is_401_other_tenant_403_unknown_tenant_404_bad_values_422(client: TestClient) -> None:
    body = {"text": "x", "reason": "why not"}
    assert client.put("/tenants/acme/prompt", json=body).status_code == 401
    assert client.put("/tenants/acme/prompt", json=body, headers=as_("nobody")).status_code == 401
    assert client.put("/tenants/acme/prompt", json=body, headers=as_("carol")).status_code == 403
    assert client.put("/tenants/nowhere/prompt", json=body, headers=as_("alice")).status_code == 404
    assert client.put("/tenants/acme/prompt", json={"text": "x"}, headers=as_("alice")).status_code == 422
    threshold = {"value": 1.5, "justification": "too high"}
    put = client.put("/tenants/acme/policies/answer_confidence_threshold", json=threshold, headers=as_("alice"))
    assert put.status_code == 422
    unknown = client.put("/tenants/acme/policies/nope", json={"value": 1, "justification": "abc"}, headers=as_("alice"))
    assert unknown.status_code == 404


def test_crawls_report_page_counts_and_a_blocked_domain_is_502_with_a_failed_run(client: TestClient) -> None:
    ok = client.post("/tenants/acme/crawls", json={"domain": "docs.acme.io", "trigger": "schedule"},
                     headers=as_("scheduler"))
    assert ok.status_code == 201
    result = ok.json()
    assert result["trigger"] == "schedule" and result["status"] in ("succeeded", "partial")
    assert result["pages_crawled"] > 0 and result["pages_failed"] >= 0
    again = client.post("/tenants/acme/crawls", json={"domain": "docs.acme.io", "trigger": "manual"}, headers=as_("bob"))
    assert again.json()["pages_crawled"] == result["pages_crawled"]  # deterministic simulation
    assert again.json()["run_id"] != result["run_id"]

    failed = client.post("/tenants/acme/crawls", json={"domain": "staging.acme.invalid", "trigger": "manual"},
                         headers=as_("bob"))
    assert failed.status_code == 502
    run = client.get(f"/tenants/acme/crawls/{failed.json()['run_id']}", headers=as_("alice")).json()
    assert run["status"] == "failed" and "blocked" in run["error"]
    bad_trigger = client.post("/tenants/acme/crawls", json={"domain": "acme.io", "trigger": "cron"}, headers=as_("bob"))
    assert bad_trigger.status_code == 422


def test_impersonation_makes_bob_the_acting_user_within_one_tenant(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str | None, str | None, str]] = []
    original_set = PolicyStore.set

    def spying_set(self: PolicyStore, tenant_id: str, key: str, value: Any, actor: str, justification: str) -> Any:
        seen.append((auth.current_user_id(), auth.current_real_user_id(), actor))
        return original_set(self, tenant_id, key, value, actor, justification)

    monkeypatch.setattr(PolicyStore, "set", spying_set)

    assert client.post("/admin/impersonations", json={"user_id": "bob@acme.io", "tenant_id": "globex",
                                                      "reason": "SUP-1"}, headers=as_("alice")).status_code == 403
    started = client.post("/admin/impersonations", json={"user_id": "bob@acme.io", "tenant_id": "globex",
                                                         "reason": "SUP-1043"}, headers=as_("ops"))
    assert started.status_code == 201
    session = started.json()
    assert (session["impersonator"], session["user_id"], session["ended_at"]) == ("ops@vendor.io", "bob@acme.io", None)
    sid = session["session_id"]

    me = client.get("/me", headers=as_("ops", **{"X-Impersonation": sid})).json()
    assert (me["user_id"], me["real_user_id"], me["impersonation"]) == ("bob@acme.io", "ops@vendor.io", sid)
    edit = {"value": 1200, "justification": "SUP-1043 repro"}
    assert client.put("/tenants/globex/policies/max_tokens", json=edit,
                      headers=as_("ops", **{"X-Impersonation": sid})).status_code == 200
    assert seen == [("bob@acme.io", "ops@vendor.io", "bob@acme.io")]
    policy = client.get("/tenants/globex/policies/max_tokens", headers=as_("carol")).json()
    assert (policy["value"], policy["updated_by"]) == (1200, "bob@acme.io")

    # The session is limited to globex, and to the impersonator who opened it.
    assert client.put("/tenants/acme/policies/max_tokens", json=edit,
                      headers=as_("ops", **{"X-Impersonation": sid})).status_code == 403
    assert client.get("/me", headers=as_("carol", **{"X-Impersonation": sid})).status_code == 403

    ended = client.delete(f"/admin/impersonations/{sid}", headers=as_("ops"))
    assert ended.status_code == 200 and ended.json()["ended_at"] is not None
    assert client.get("/me", headers=as_("ops", **{"X-Impersonation": sid})).status_code == 403
    assert client.delete(f"/admin/impersonations/{sid}", headers=as_("ops")).status_code == 409
    assert auth.current_user_id() is None  # outside a request


def test_the_acting_user_is_visible_inside_the_async_crawl(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []
    original = crawler.run_crawl

    async def spying_run_crawl(tenant_id: str, domain: str, trigger: str) -> crawler.CrawlResult:
        seen.append(auth.current_user_id())
        return await original(tenant_id, domain, trigger)

    monkeypatch.setattr(crawler, "run_crawl", spying_run_crawl)
    client.post("/tenants/acme/crawls", json={"domain": "acme.io", "trigger": "indexnow"}, headers=as_("bob"))
    assert seen == ["bob@acme.io"]


def test_kill_switches_global_and_per_tenant(client: TestClient) -> None:
    def state(feature: str, scope: str = "*") -> str:
        return client.get(f"/killswitches/{feature}", params={"scope": scope}, headers=as_("ops")).json()["state"]

    assert state("embed") == "enabled"
    body = {"scope": "*", "reason": "SEC-77 XSS in widget"}
    assert client.post("/killswitches/embed/disable", json=body, headers=as_("alice")).status_code == 403
    assert client.post("/killswitches/embed/disable", json=body, headers=as_("ops")).json()["state"] == "disabled"
    assert state("embed") == "disabled"
    assert client.post("/killswitches/embed/enable", json=body, headers=as_("ops")).json()["state"] == "enabled"
    assert state("embed") == "enabled"

    tenant_body = {"scope": "globex", "reason": "crawl budget exhausted"}
    assert client.post("/killswitches/crawler/disable", json=tenant_body, headers=as_("bob")).status_code == 403
    assert client.post("/killswitches/crawler/disable", json=tenant_body, headers=as_("carol")).status_code == 200
    assert (state("crawler", "globex"), state("crawler", "acme"), state("crawler")) == ("disabled", "enabled", "enabled")
    refused = client.post("/tenants/globex/crawls", json={"domain": "globex.com", "trigger": "manual"}, headers=as_("bob"))
    assert refused.status_code == 503
    allowed = client.post("/tenants/acme/crawls", json={"domain": "acme.io", "trigger": "manual"}, headers=as_("bob"))
    assert allowed.status_code == 201
    assert client.post("/killswitches/teleport/disable", json=body, headers=as_("ops")).status_code == 404


def test_billing_plan_quota_and_grace(client: TestClient) -> None:
    assert client.get("/tenants/acme/billing", headers=as_("alice")).json()["plan"] == "starter"
    plan = client.put("/tenants/acme/billing/plan", json={"plan": "pro"}, headers=as_("alice")).json()
    assert (plan["plan"], plan["quota"]) == ("pro", 50_000)
    assert client.put("/tenants/acme/billing/plan", json={"plan": "gold"}, headers=as_("alice")).status_code == 422
    assert client.put("/tenants/acme/billing/plan", json={"plan": "free"}, headers=as_("bob")).status_code == 403

    override = {"quota": 75_000, "reason": "launch week"}
    assert client.put("/tenants/acme/billing/quota", json=override, headers=as_("alice")).status_code == 403
    assert client.put("/tenants/acme/billing/quota", json=override, headers=as_("ops")).json()["quota"] == 75_000

    grace = client.post("/tenants/globex/billing/grace", json={"days": 14}, headers=as_("ops"))
    assert grace.status_code == 201 and grace.json()["grace_until"].endswith("Z")
    assert client.delete("/tenants/globex/billing/grace", headers=as_("ops")).json()["grace_until"] is None
    assert client.delete("/tenants/globex/billing/grace", headers=as_("ops")).status_code == 409


def test_scenario_runs_against_plain_uvicorn(tmp_path: Path) -> None:
    demo = _load("demo")
    scenario = _load("scenario")
    port = demo.free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ASSISTANT_DB": str(tmp_path / "assistant.db")}
    log_path = tmp_path / "app.log"
    proc = demo.start_server(demo.server_command(port, audit=False), env, log_path)
    try:
        demo.wait_healthy(base_url, proc, log_path)
        steps = scenario.run_scenario(base_url)
        me = httpx.get(f"{base_url}/me", headers={**as_("carol"), "X-Forwarded-For": "198.51.100.7"}).json()
        policy = httpx.get(f"{base_url}/tenants/acme/policies/answer_confidence_threshold", headers=as_("alice")).json()
        crawler_state = httpx.get(f"{base_url}/killswitches/crawler", params={"scope": "globex"},
                                  headers=as_("carol")).json()
    finally:
        demo.stop_server(proc)
    assert len(steps) == 16 and all(isinstance(step, str) and step for step in steps)
    assert me["client_ip"] == "198.51.100.7"  # --proxy-headers: the forwarded address is the client
    assert policy["value"] == 0.72
    assert crawler_state["state"] == "disabled"
    assert (tmp_path / "assistant.db").exists()
