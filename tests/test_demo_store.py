"""`make demo` end to end: the example app -> OTLP -> `auditrail serve` (embedded chDB) -> exports verified."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDITRAIL_DEMO_DIR": str(tmp_path / "demo")}
    return subprocess.run([sys.executable, str(REPO / "examples" / "assistant" / "demo.py"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_demo_stores_every_event_verifies_each_tenant_and_writes_exports(tmp_path):
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "20 audit events stored in chdb://" in out
    for tenant in ("'acme'", "'globex'", "'*'"):
        assert f"tenant {tenant}: verify OK in the store, OK offline" in out
    exports = tmp_path / "demo" / "exports"
    with (exports / "acme.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == ["event_id", "event_type", "timestamp", "tenant_id", "actor", "source_ip", "payload"]
    assert {r["tenant_id"] for r in rows} == {"acme"}
    # The global kill switch, under dual approval: ops asks, may not approve it, alice does, it runs once.
    assert "ops@vendor.io tried to approve it: refused (403)" in out and "(self-approval)" in out
    assert "alice@acme.io approved it:" in out and "an approval is used once: a new request" in out
    global_events = json.loads((exports / "global.json").read_text())["events"]
    [disable] = [e for e in global_events if e["event_type"] == "killswitch.disable"]
    [granted] = [e for e in global_events if e["event_type"] == "approval.granted"]
    assert disable["approval_id"] == granted["approval_id"] and granted["actor"] == "alice@acme.io"
    assert sum(r["event_type"] == "prompt.update" for r in rows) == 2
    document = json.loads((exports / "globex.json").read_text())
    assert any(e["event_type"] == "admin.impersonation.start" for e in document["events"])


def test_demo_through_the_collector_stores_every_event_and_posts_alerts(tmp_path):
    from collector import require_binary

    require_binary()
    done = run_demo(tmp_path, "--collector")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "20 audit events stored in chdb://" in out
    assert "tenant 'acme': verify OK in the store, OK offline" in out
    # rules.yaml alerts on prompt updates, impersonations, kill switches and approval requests (one card per
    # rule, tenant, type)
    for line in ("prompt.update: tenant acme", "admin.impersonation.start: tenant globex",
                 "killswitch.disable: tenant *", "approval.requested: tenant *"):
        assert f"  - {line}" in out
    assert "crawl.run: tenant" not in out
