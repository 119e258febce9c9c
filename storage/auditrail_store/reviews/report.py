"""The monthly review's content: one tenant-month of the store, reduced to what a reviewer reads.

:func:`collect` asks the engine (queries.py) and returns a JSON-ready dict; render.py turns it into HTML
and PDF. Anomalies each carry the reason they were flagged, so a reviewer can judge them, and the
thresholds that decided it are printed in the report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import yaml

from ..archive import month_range
from ..db import Store
from .queries import IMPERSONATION, ROW_COLUMNS, Month

__all__ = ["ReviewOptions", "collect", "required_approvals"]

RISKS = ("high", "critical")


@dataclass(frozen=True)
class ReviewOptions:
    """The thresholds of the anomaly checks (printed in the report)."""

    burst_per_minute: int = 30  # one actor doing this many things in one minute
    failures_per_hour: int = 3  # one actor failing the same action this often in one hour
    usual_hour_share: float = 0.01  # an hour is usual if it held at least 1% of the baseline's events
    baseline_min_events: int = 50  # fewer baseline events: no usual-hours check (said so)
    config: str | None = None  # the app's audit.yaml: which actions require an approval
    integrity: str = "full"  # full: verify_stored (hashes, links, signatures); quick: the chains' shape, in the engine


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _events(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        event = {c: _iso(v) for c, v in zip(ROW_COLUMNS, row, strict=True)}
        try:
            event["payload"] = json.loads(event["payload"]) if event["payload"] else {}
        except ValueError:
            pass  # shown as stored
        out.append(event)
    return out


def _listing(result: tuple[int, list[tuple[Any, ...]]]) -> dict[str, Any]:
    total, rows = result
    return {"total": total, "events": _events(rows)}


def required_approvals(config: str | None) -> list[dict[str, Any]]:
    """The actions the app's audit.yaml puts behind an approval: [{event, when}]; [] without a config."""
    path = config or os.environ.get("AUDITRAIL_CONFIG") or "audit.yaml"
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as stream:
        doc = yaml.safe_load(stream) or {}
    out = []
    for entry in doc.get("events") or []:
        if isinstance(entry, dict) and entry.get("approval") and entry.get("event"):
            spec = entry["approval"] if isinstance(entry["approval"], dict) else {}
            out.append({"event": str(entry["event"]), "when": spec.get("when")})
    return out


def _kill_switches(events: list[dict[str, Any]], end: datetime) -> list[dict[str, Any]]:
    """Each disable with the enable that ended it (same feature and scope) and how long it stayed off."""
    open_: dict[tuple[Any, Any], dict[str, Any]] = {}
    out = []
    for event in events:
        payload = event["payload"] if isinstance(event["payload"], dict) else {}
        key = (payload.get("feature"), payload.get("scope"))
        if event["event_type"] == "killswitch.disable" and event["outcome"] != "failure":
            item = {"feature": key[0], "scope": key[1], "disabled_at": event["timestamp"], "by": event["actor"],
                    "reason": event["reason"], "enabled_at": None, "enabled_by": None}
            open_[key] = item
            out.append(item)
        elif event["event_type"] == "killswitch.enable" and key in open_:
            item = open_.pop(key)
            item["enabled_at"], item["enabled_by"] = event["timestamp"], event["actor"]
    for item in out:
        stop = _parse(item["enabled_at"]) if item["enabled_at"] else end
        item["disabled_seconds"] = int((stop - _parse(item["disabled_at"])).total_seconds())
        item["still_disabled"] = item["enabled_at"] is None
    return out


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sessions(events: list[dict[str, Any]], end: datetime) -> list[dict[str, Any]]:
    """Impersonation sessions of the month: who, whom, when, how long, and every action inside."""
    sessions: dict[str, dict[str, Any]] = {}

    def session(sid: str) -> dict[str, Any]:
        return sessions.setdefault(sid, {"session": sid, "impersonator": None, "impersonated": None,
                                         "started_at": None, "ended_at": None, "actions": []})

    for event in events:
        payload = event["payload"] if isinstance(event["payload"], dict) else {}
        sid = str(payload.get("session") or event["impersonation_id"] or "")
        if event["event_type"] in IMPERSONATION and sid:
            item = session(sid)
            item["impersonator"] = item["impersonator"] or event["actor"]
            item["impersonated"] = item["impersonated"] or payload.get("impersonated")
            item["started_at" if event["event_type"].endswith("start") else "ended_at"] = event["timestamp"]
        elif event["impersonation_id"]:
            item = session(event["impersonation_id"])
            item["impersonator"] = item["impersonator"] or event["impersonator_id"]
            item["impersonated"] = item["impersonated"] or event["actor"]
            item["actions"].append(event)
    for item in sessions.values():
        if item["started_at"]:
            stop = _parse(item["ended_at"]) if item["ended_at"] else end
            item["seconds"] = int((stop - _parse(item["started_at"])).total_seconds())
        else:
            item["seconds"] = None  # started before the month
    return sorted(sessions.values(), key=lambda s: s["started_at"] or "")


def collect(store: Store, tenant: str, month: str, options: ReviewOptions | None = None,
            verification: dict[str, Any] | None = None) -> dict[str, Any]:
    """The review of `tenant` for `month` (YYYY-MM) as a JSON-ready dict."""
    options = options or ReviewOptions()
    start, end = month_range(month)
    previous = month_range((start - timedelta(days=1)).strftime("%Y-%m"))[0]
    q = Month(store, tenant, start, end, previous)

    per_day = [(d, int(c)) for d, c in q.per_day()]
    types = [{"event_type": t, "count": int(n), "previous": int(p), "failures": int(f)} for t, n, p, f in q.per_type()]
    total = sum(t["count"] for t in types)
    high = _listing(q.high_risk())
    impersonation = _listing(q.impersonation())

    baseline = q.hour_baseline()
    baseline_total = sum(baseline.values())
    if baseline_total >= options.baseline_min_events:
        usual = sorted(h for h, c in baseline.items() if c >= options.usual_hour_share * baseline_total)
        hours = _listing(q.outside_hours(usual))
        hours.update(checked=True, usual_hours=usual, baseline_events=baseline_total)
    else:
        hours = {"checked": False, "baseline_events": baseline_total, "total": 0, "events": [], "usual_hours": []}

    required = required_approvals(options.config)
    kinds = sorted({r["event"] for r in required})
    unapproved = _listing(q.without_approval(kinds)) if kinds else {"total": 0, "events": []}
    approvals = [dict(zip(("approval_id", "action", "target", "requester", "state", "approved_by", "decided_by",
                           "reason", "created_at", "decided_at"), map(_iso, row), strict=True))
                 for row in q.approvals()]
    for item in approvals:
        try:
            item["approved_by"] = json.loads(item["approved_by"] or "[]")
        except ValueError:
            pass

    from ..retention import contract

    retention = contract(store, tenant)
    return {
        "format": "auditrail-review/1",
        "tenant": tenant,
        "month": month,
        "period": {"start": _iso(start), "end": _iso(end), "previous_start": _iso(previous)},
        "generated_at": _iso(datetime.now(timezone.utc)),
        "options": {k: v for k, v in options.__dict__.items() if k != "config"},
        "volume": {
            "total": total, "previous_total": sum(t["previous"] for t in types),
            "per_day": [{"day": d.isoformat(), "count": c} for d, c in per_day if d >= start.date()],
            "previous_per_day": [{"day": d.isoformat(), "count": c} for d, c in per_day if d < start.date()],
            "per_type": types,
        },
        "high_risk": {**high, "kill_switches": _kill_switches(high["events"], end)},
        "impersonation": {"total": impersonation["total"], "sessions": _sessions(impersonation["events"], end)},
        "approvals": {
            "items": approvals,
            "by_state": {s: sum(1 for a in approvals if a["state"] == s)
                         for s in ("pending", "granted", "denied", "expired", "used")},
            "required": required,
            "without_approval": unapproved,
        },
        "anomalies": {
            "outside_hours": hours,
            "new_actors": [{"actor": a, "first_seen": _iso(f), "events": int(n)} for a, f, n in q.new_actors()],
            "bursts": [{"actor": a, "minute": _iso(m), "events": int(n), "types": t}
                       for a, m, n, t in q.bursts(options.burst_per_minute)],
            "repeated_failures": [{"actor": a, "event_type": t, "hour": _iso(h), "failures": int(n),
                                   "first": _iso(f), "last": _iso(last)}
                                  for a, t, h, n, f, last in q.repeated_failures(options.failures_per_hour)],
            "config_changes": {**_listing(q.config_events()),
                               "retention": [{"changed_at": _iso(a), "days": int(d), "hold": bool(h), "by": b}
                                             for a, d, h, b in q.retention_changes()],
                               "tokens": [dict(zip(("token_id", "scope", "created_at", "created_by", "revoked_at",
                                                    "revoked_by"), map(_iso, row), strict=True))
                                          for row in q.token_changes()]},
        },
        "integrity": verification if verification is not None else (
            _verify(store, tenant, start, end) if options.integrity == "full" else _shape(q)),
        "retention": {"days": retention.days, "legal_hold": retention.hold, "forced": retention.forced,
                      "changed_at": _iso(retention.changed_at), "changed_by": retention.changed_by},
        "signoffs": _events(q.signoffs(month)),
    }


def _verify(store: Store, tenant: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The month's chain verification (verify_store.verify_stored: the export's own procedure)."""
    from ..export import ExportFilters
    from ..verify_store import verify_stored

    return verify_stored(store, tenant, ExportFilters(start, end)).to_dict()


def _shape(q: Month) -> dict[str, Any]:
    """The quick integrity check, in the engine: per chain the events, seq range, gaps, repeated seqs, and the
    checkpoints' cover and key ids. No hash is recomputed and no signature checked (`full` does both)."""
    from .queries import chain_structure, checkpoint_cover

    cover = checkpoint_cover(q)
    chains, problems = [], []
    for chain_id, events, distinct, first, last in chain_structure(q):
        if chain_id is None:
            problems.append({"kind": "unchained", "severity": "error", "chain_id": None, "seq": None, "seq_end": None,
                             "event_id": None, "message": f"{events} events without chain attributes"})
            continue
        count, top, keys = cover.get(chain_id, (0, 0, []))
        found = []
        if last - first + 1 > distinct:
            found.append({"kind": "missing", "severity": "error", "chain_id": chain_id, "seq": first, "seq_end": last,
                          "event_id": None, "message": f"{last - first + 1 - distinct} seqs missing in {first}-{last}"})
        if events > distinct:
            found.append({"kind": "duplicate", "severity": "error", "chain_id": chain_id, "seq": None,
                          "seq_end": None, "event_id": None, "message": f"{events - distinct} repeated seqs"})
        anchored = min(top, int(last))
        if anchored < last:
            found.append({"kind": "unanchored", "severity": "warning", "chain_id": chain_id, "seq": anchored + 1,
                          "seq_end": last, "event_id": None, "message": "no checkpoint covers these yet"})
        chains.append({"chain_id": chain_id, "events": int(events), "duplicates": int(events - distinct),
                       "first_seq": int(first), "last_seq": int(last), "checkpoints": count,
                       "anchored_through": anchored, "key_ids": [k for k in keys if k],
                       "ok": not [p for p in found if p["severity"] == "error"], "problems": found})
    return {"mode": "quick", "ok": all(c["ok"] for c in chains) and not problems, "trusted_keys": False,
            "chains": chains, "problems": problems}
