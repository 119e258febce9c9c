"""A day at an AI-assistant SaaS, driven over HTTP against a running assistant-admin.

`run_scenario(base_url)` makes the requests and returns one human-readable line per step. Client
addresses are sent as X-Forwarded-For; run the app with `--proxy-headers --forwarded-allow-ips 127.0.0.1`
so the app (and its audit events) see them.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

# Demo bearer tokens seeded by assistant/db.py, and the address each person works from.
PEOPLE: dict[str, tuple[str, str]] = {
    "alice": ("tok-alice", "203.0.113.10"),  # acme admin, office
    "bob": ("tok-bob", "198.51.100.23"),  # agency editor for acme and globex
    "carol": ("tok-carol", "203.0.113.77"),  # globex admin
    "ops": ("tok-ops", "192.0.2.50"),  # vendor support, VPN egress
    "scheduler": ("tok-scheduler", "10.20.0.4"),  # the crawl scheduler service
}


class ScenarioError(RuntimeError):
    """A step got a status code it did not expect."""


class _Driver:
    """Sends each step as one person and checks its status code."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(
        self,
        who: str,
        method: str,
        path: str,
        expect: int,
        json: dict[str, Any] | None = None,
        impersonation: str | None = None,
    ) -> dict[str, Any]:
        """One request as `who`; raises ScenarioError unless the response status is `expect`."""
        token, ip = PEOPLE[who]
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": ip}
        if impersonation:
            headers["X-Impersonation"] = impersonation
        response = self.client.request(method, path, json=json, headers=headers)
        if response.status_code != expect:
            raise ScenarioError(
                f"{method} {path} as {who}: expected HTTP {expect}, got {response.status_code}: {response.text[:300]}"
            )
        body = response.json() if response.content else {}
        return body if isinstance(body, dict) else {"items": body}


class ApprovalDesk(Protocol):
    """Where people decide approval requests (the demo: `auditrail approvals approve` with their token)."""

    def approve(self, who: str, approval_id: str, reason: str) -> tuple[bool, str]:
        """`who` approves `approval_id`: (granted, what the service said)."""


def _approved_global_disable(d: _Driver, approvals: ApprovalDesk, body: dict[str, Any]) -> list[str]:
    """The global kill switch under dual approval (audit.yaml: `approval: {when: 'scope == "*"'}`).

    Audit events, step by step: approval.requested; none; none (the decision is recorded in the app's
    chain when it is used); approval.granted, approval.used, killswitch.disable; approval.requested.
    """
    steps = []
    r = d.call("ops", "POST", "/killswitches/embed/disable", 428, body)
    approval_id = r["approval_id"]
    steps.append(f"ops@vendor.io asked to disable embed for every tenant: refused (428), needs approval "
                 f"{approval_id} ({r['approval_url']})")
    granted, said = approvals.approve("ops", approval_id, "urgent, approving my own")
    if granted:
        raise ScenarioError(f"ops@vendor.io approved their own request: {said}")
    steps.append(f"ops@vendor.io tried to approve it: {said}")
    granted, said = approvals.approve("alice", approval_id, "SEC-77 confirmed with the security team")
    if not granted:
        raise ScenarioError(f"alice@acme.io could not approve {approval_id}: {said}")
    steps.append(f"alice@acme.io approved it: {said}")
    r = d.call("ops", "POST", "/killswitches/embed/disable", 200, body)
    steps.append(f"ops@vendor.io retried: embed {r['state']} for every tenant (global kill switch), "
                 f"with approval {approval_id}")
    r = d.call("ops", "POST", "/killswitches/embed/disable", 428, body)
    steps.append(f"ops@vendor.io retried once more: refused (428), an approval is used once: "
                 f"a new request {r['approval_id']}")
    return steps


def run_scenario(base_url: str, approvals: ApprovalDesk | None = None) -> list[str]:
    """Drive the whole story against `base_url`; return what happened, one line per step.

    `approvals`: the audited app's approval service, where people approve (None: the app runs unaudited,
    so the global kill switch needs none)."""
    steps: list[str] = []
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        d = _Driver(client)

        r = d.call("alice", "PUT", "/tenants/acme/prompt", 200, {
            "text": "You are Acme's product assistant. Answer from the indexed docs only; "
                    "say 'I don't know' when the docs do not cover a question.",
            "reason": "Stop guessing on uncovered questions (CS-311)",
        })
        steps.append(f"alice@acme.io edited the acme prompt -> version {r['version']}")
        r = d.call("alice", "PUT", "/tenants/acme/prompt", 200, {
            "text": "You are Acme's product assistant. Answer from the indexed docs only; "
                    "say 'I don't know' when the docs do not cover a question. "
                    "Never quote prices: link to acme.io/pricing instead.",
            "reason": "Legal: prices on the pricing page only (LEGAL-42)",
        })
        steps.append(f"alice@acme.io edited the acme prompt again -> version {r['version']}")

        r = d.call("scheduler", "POST", "/tenants/acme/crawls", 201, {"domain": "docs.acme.io", "trigger": "schedule"})
        steps.append(
            f"scheduler crawled docs.acme.io for acme (schedule): {r['pages_crawled']} pages, "
            f"{r['pages_failed']} failed, run {r['run_id']}"
        )
        r = d.call("bob", "POST", "/tenants/acme/crawls", 201, {"domain": "www.acme.io", "trigger": "manual"})
        steps.append(f"bob@acme.io crawled www.acme.io for acme (manual): {r['pages_crawled']} pages, run {r['run_id']}")
        r = d.call("bob", "POST", "/tenants/acme/crawls", 502, {"domain": "staging.acme.invalid", "trigger": "manual"})
        steps.append(f"bob@acme.io tried to crawl staging.acme.invalid: refused (502), run {r['run_id']} failed")

        r = d.call("alice", "PUT", "/tenants/acme/policies/answer_confidence_threshold", 200, {
            "value": 0.72, "justification": "Too many low-confidence answers on security questions (CS-318)",
        })
        steps.append(f"alice@acme.io raised acme's answer_confidence_threshold to {r['value']}")

        r = d.call("alice", "PUT", "/tenants/acme/billing/plan", 200, {"plan": "pro"})
        steps.append(f"alice@acme.io upgraded acme to the {r['plan']} plan (quota {r['quota']})")
        r = d.call("ops", "PUT", "/tenants/acme/billing/quota", 200, {
            "quota": 75_000, "reason": "Launch week burst, approved by account manager (SUP-1042)",
        })
        steps.append(f"ops@vendor.io overrode acme's monthly quota to {r['quota']}")
        r = d.call("ops", "POST", "/tenants/globex/billing/grace", 201, {"days": 14})
        steps.append(f"ops@vendor.io opened a payment grace period for globex until {r['grace_until']}")
        d.call("ops", "DELETE", "/tenants/globex/billing/grace", 200)
        steps.append("ops@vendor.io closed globex's grace period (invoice paid)")

        r = d.call("ops", "POST", "/admin/impersonations", 201, {
            "user_id": "bob@acme.io", "tenant_id": "globex",
            "reason": "SUP-1043: bob says globex answers are cut off",
        })
        session = r["session_id"]
        steps.append(f"ops@vendor.io started impersonating bob@acme.io at globex (session {session})")
        me = d.call("ops", "GET", "/me", 200, impersonation=session)
        if me["user_id"] != "bob@acme.io" or me["real_user_id"] != "ops@vendor.io":
            raise ScenarioError(f"impersonation did not take effect: {me}")
        r = d.call("ops", "PUT", "/tenants/globex/policies/max_tokens", 200, {
            "value": 1200, "justification": "SUP-1043: answers truncated at 800 tokens",
        }, impersonation=session)
        steps.append(f"  ...as bob@acme.io, set globex's max_tokens to {r['value']}")
        r = d.call("ops", "DELETE", f"/admin/impersonations/{session}", 200)
        steps.append(f"ops@vendor.io ended impersonation session {session} at {r['ended_at']}")

        disable = {"scope": "*", "reason": "SEC-77: XSS report against the embed widget"}
        if approvals is None:  # the app runs without auditrail: nothing asks for an approval
            d.call("ops", "POST", "/killswitches/embed/disable", 200, disable)
            steps.append("ops@vendor.io disabled embed for every tenant (global kill switch)")
        else:
            steps.extend(_approved_global_disable(d, approvals, disable))
        d.call("ops", "POST", "/killswitches/embed/enable", 200, {
            "scope": "*", "reason": "SEC-77: widget 2.4.1 deployed with the fix",
        })
        steps.append("ops@vendor.io re-enabled embed for every tenant")
        d.call("carol", "POST", "/killswitches/crawler/disable", 200, {
            "scope": "globex", "reason": "Crawl budget exhausted for this month",
        })
        steps.append("carol@globex.com disabled the crawler for globex")
    return steps


if __name__ == "__main__":
    import sys

    for line in run_scenario(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"):
        print(line)
