"""A known month of audit events (October 2026, tenant acme) for the review tests and the benchmark's check.

Rows go into otel_logs the way the collector's exporter appends them (the materialized view fills
audit_events), built from the instrumentation's own AuditEvent model. What is in it, and so what the
review must say, is spelled out in EXPECTED.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from auditrail.events import AuditEvent
from auditrail_store.db import Store
from test_storage_schema import audit_row, insert_rows

MONTH = "2026-10"
TENANT = "acme"


def at(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 10) -> int:
    """ns since the epoch of 2026-<month>-<day> hour:minute:second UTC."""
    return int(datetime(2026, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()) * 10**9


def event(kind: str, when: int, actor: str | None, tenant: str = TENANT, **kw: Any) -> AuditEvent:
    """An AuditEvent at `when`."""
    payload = kw.pop("payload", {})
    return AuditEvent(kind, tenant=tenant, actor=actor, time_unix_nano=when, payload=json.dumps(payload), **kw)


def month_events() -> list[AuditEvent]:
    """The baseline (August and September, office hours) and October's events."""
    events = []
    for day in range(1, 29):  # baseline: alice and bob, 09:00-17:00 UTC, 2 a day, Aug and Sep
        for month in (8, 9):
            events.append(event("crawl.run", at(day, 9 + day % 8, month=month), "alice@acme.io", risk="low"))
            events.append(event("crawl.run", at(day, 10 + day % 7, 30, month=month), "bob@acme.io", risk="low"))
    for day in range(1, 21):  # October's routine: 20 crawls by alice at 10:00
        events.append(event("crawl.run", at(day, 10), "alice@acme.io", risk="low"))
    events += [
        event("prompt.update", at(3, 11), "alice@acme.io", risk="high", reason="tone down pricing claims",
              payload={"before": {"prompt_hash": "aa"}, "after": {"prompt_hash": "bb"}}),
        event("policy.update", at(4, 11), "bob@acme.io", risk="high", reason="raise the refusal threshold",
              payload={"before": {"threshold": 0.7}, "after": {"threshold": 0.8}}),
        event("killswitch.disable", at(5, 12), "ops@vendor.io", risk="critical", reason="embed leaking drafts",
              approval_id="appr-1", payload={"feature": "embed", "scope": TENANT}),
        event("killswitch.enable", at(5, 13, 30), "ops@vendor.io", risk="high", reason="fixed",
              payload={"feature": "embed", "scope": TENANT}),
        event("admin.impersonation.start", at(7, 14), "ops@vendor.io", risk="high",
              payload={"impersonated": "carol@acme.io", "session": "imp-1"}),
        event("prompt.update", at(7, 14, 5), "carol@acme.io", risk="high", reason="customer asked",
              impersonator="ops@vendor.io", impersonation_id="imp-1"),
        event("billing.plan.change", at(7, 14, 10), "carol@acme.io", risk="medium",
              impersonator="ops@vendor.io", impersonation_id="imp-1", payload={"before": {"plan": "free"},
                                                                                 "after": {"plan": "pro"}}),
        event("admin.impersonation.end", at(7, 14, 20), "ops@vendor.io", risk="high",
              payload={"impersonated": "carol@acme.io", "session": "imp-1"}),
        event("prompt.update", at(8, 3), "alice@acme.io", risk="high", reason="night fix"),  # outside hours
        event("crawl.run", at(9, 10, 15), "mallory@evil.example", risk="low"),  # never seen before
        event("audit.config.update", at(12, 10), "bob@acme.io", risk="high", reason="lower sampling",
              payload={"before": {"redact": ["token"]}, "after": {"redact": []}}),
    ]
    events += [event("crawl.run", at(10, 15, 0, s), "dave@acme.io", risk="low") for s in range(35)]  # burst
    events += [event("policy.update", at(11, 10, m), "bob@acme.io", risk="medium", outcome="failure")
               for m in (1, 5, 9, 30)]  # repeated failures
    events += [event("policy.update", at(11, 16, m), "erin@acme.io", risk="medium", outcome="failure")
               for m in (1, 2)]  # two failures: not repeated enough
    # Another tenant's month, which acme's review must never show.
    events += [event("admin.impersonation.start", at(7, 15), "ops@vendor.io", tenant="globex", risk="high",
                     payload={"impersonated": "zed@globex.io", "session": "imp-g"}),
               event("prompt.update", at(7, 15, 1), "zed@globex.io", tenant="globex", risk="high",
                     impersonator="ops@vendor.io", impersonation_id="imp-g")]
    return events


def approvals_rows() -> list[list[Any]]:
    """Two approval requests of October: one granted (and used), one denied."""
    def row(aid: str, state: str, decided_by: str, created: datetime) -> list[Any]:
        return [aid, TENANT, "d" * 64, "killswitch.disable", "embed", "ops@vendor.io", "", "{}", "{}", "", 1,
                json.dumps([decided_by]), decided_by, "ok" if state != "denied" else "not now", state, created,
                created + timedelta(hours=1), created + timedelta(minutes=5), None, 1]
    start = datetime(2026, 10, 5, 11, 50, tzinfo=timezone.utc)
    return [row("appr-1", "used", "sec@vendor.io", start), row("appr-2", "denied", "sec@vendor.io", start + timedelta(days=2))]


APPROVAL_COLUMNS = ["approval_id", "tenant_id", "digest", "event_type", "target", "requester", "impersonator", "bound",
                    "before", "reason", "approvers", "approved_by", "decided_by", "decision_reason", "state",
                    "created_at", "expires_at", "decided_at", "used_at", "version"]

CONFIG = """
events:
  - target: assistant.killswitch:KillSwitches.disable
    event: killswitch.disable
    approval: {approvers: 1}
"""


def fill(store: Store) -> None:
    """Insert the month into a migrated store."""
    insert_rows(store, [audit_row(e) for e in month_events()])
    store.insert("approvals", approvals_rows(), APPROVAL_COLUMNS)
