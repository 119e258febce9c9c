"""The Grafana dashboards' queries as the ClickHouse data source sends them, run on chDB over known events.

Events enter through the store's OTLP ingest (OTLP/JSON decoded by ingest.decode_request, written into
otel_logs by LogWriter, typed into audit_events by the materialized view), one of them twice (a retry).
Each panel's and variable's SQL is expanded as grafana-clickhouse-datasource does (grafana/queries.py) and
must return the expected columns and rows; an empty range returns no rows and no error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grafana import generate, queries  # noqa: E402
from grafana.queries import ALL, APPROVALS, DASHBOARDS, DRILL_DOWN, INTEGRITY, OVERVIEW, expand  # noqa: E402

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
T0 = NOW - timedelta(hours=30)  # the scenario starts here; the 24 h range is [NOW - 24h, NOW]
RANGE = (NOW - timedelta(hours=24), NOW)


def _attr(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


class Scenario:
    """Known audit events, chained per (tenant, service), sent as OTLP/JSON requests."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {}
        self.chains: dict[tuple[str, str], tuple[str, int, str]] = {}
        self.event_ids: list[str] = []

    def add(self, minutes: float, tenant: str, event: str, actor: str | None = None, *, service: str = "assistant",
            risk: str = "low", outcome: str = "success", ip: str | None = None, payload: dict | None = None,
            reason: str | None = None, approval: str | None = None, impersonation: tuple[str, str] | None = None,
            skip_seq: bool = False, forged_link: bool = False) -> str:
        """One event `minutes` after T0; returns its id. `skip_seq` leaves a seq out, `forged_link` gives a
        prev_hash that is not the previous event's hash."""
        event_id = str(uuid.uuid4())
        chain_id, seq, head = self.chains.get((tenant, service), (f"{service}-{tenant}", 0, "0" * 64))
        seq += 2 if skip_seq else 1
        digest = uuid.uuid5(uuid.NAMESPACE_URL, event_id).hex * 2
        self.chains[(tenant, service)] = (chain_id, seq, digest)
        attributes = [_attr("audit.event_id", event_id), _attr("audit.tenant_id", tenant),
                      _attr("audit.risk", risk), _attr("audit.outcome", outcome),
                      _attr("audit.chain.id", chain_id), _attr("audit.chain.seq", str(seq)),
                      _attr("audit.chain.prev_hash", "f" * 64 if forged_link else head), _attr("audit.chain.hash", digest)]
        for key, value in (("enduser.id", actor), ("client.address", ip), ("audit.reason", reason),
                           ("audit.approval.id", approval),
                           ("audit.payload", json.dumps(payload) if payload is not None else None)):
            if value is not None:
                attributes.append(_attr(key, value))
        if impersonation:
            attributes += [_attr("audit.impersonator.id", impersonation[0]),
                           _attr("audit.impersonation.id", impersonation[1])]
        at = T0 + timedelta(minutes=minutes)
        self.records.setdefault(service, []).append({
            "timeUnixNano": str(int(at.timestamp() * 1e9)), "severityText": "INFO", "severityNumber": 9,
            "eventName": event, "body": {"stringValue": event}, "attributes": attributes})
        self.event_ids.append(event_id)
        return event_id

    def checkpoint(self, minutes: float, tenant: str, service: str = "assistant") -> str:
        """A signed checkpoint's event (its signature is not what these dashboards check)."""
        _, seq, _ = self.chains[(tenant, service)]
        return self.add(minutes, tenant, "audit.checkpoint", None, service=service, risk="low",
                        payload={"seq": seq, "key_id": "k1"})

    def requests(self) -> list[bytes]:
        """One OTLP/JSON ExportLogsServiceRequest per service."""
        return [orjson.dumps({"resourceLogs": [{
            "resource": {"attributes": [_attr("service.name", service)]},
            "scopeLogs": [{"scope": {"name": "auditrail"}, "logRecords": records}]}]})
            for service, records in sorted(self.records.items())]


def build_scenario() -> Scenario:
    """The demo's story over two tenants and the global scope, plus older history (before the 24 h range)."""
    s = Scenario()
    # Older history, 30 h ago: acme's admin from a known address; globex's checkpoint anchors its chain.
    s.add(0, "acme", "crawl.run", "alice@acme.io", ip="198.51.100.7", payload={"domain": "acme.io", "pages": 3})
    s.add(1, "globex", "crawl.run", "bob@globex.io", ip="198.51.100.8")
    s.checkpoint(2, "globex")
    # In the range (T0 + 6 h = NOW - 24 h; everything below starts at 400 min).
    s.add(400, "acme", "prompt.update", "alice@acme.io", risk="high", ip="198.51.100.7", reason="tone",
          payload={"before": {"prompt_hash": "aa"}, "after": {"prompt_hash": "bb", "version": 2}})
    s.add(410, "acme", "policy.update", "alice@acme.io", risk="high", ip="203.0.113.5",
          payload={"before": {"max_pages": 10}, "after": {"max_pages": 20}})
    s.add(420, "acme", "crawl.run", "svc-crawler", ip="203.0.113.5", outcome="failure", reason="timeout")
    s.checkpoint(421, "acme")
    s.add(430, "acme", "crawl.run", "alice@acme.io", ip="198.51.100.7")
    s.add(500, "acme", "killswitch.disable", "alice@acme.io", risk="critical",
          payload={"feature": "crawl", "scope": "acme", "before": {"state": "on"}, "after": {"state": "off"}})
    s.add(530, "acme", "killswitch.enable", "alice@acme.io", risk="high",
          payload={"feature": "crawl", "scope": "acme"})
    s.add(600, "acme", "killswitch.disable", "bob@acme.io", risk="critical", payload={"feature": "chat"})
    # globex: an impersonation session with two actions inside it; a seq is missing after it.
    s.add(700, "globex", "admin.impersonation.start", "ops@vendor.io", risk="critical", ip="192.0.2.44",
          payload={"impersonated": "carol@globex.io", "session": "imp-1"}, impersonation=("ops@vendor.io", "imp-1"))
    s.add(705, "globex", "billing.plan.change", "carol@globex.io", risk="high", ip="192.0.2.44",
          impersonation=("ops@vendor.io", "imp-1"), payload={"before": {"plan": "pro"}, "after": {"plan": "team"}})
    s.add(706, "globex", "prompt.update", "carol@globex.io", risk="high", ip="192.0.2.44",
          impersonation=("ops@vendor.io", "imp-1"))
    s.add(710, "globex", "admin.impersonation.end", "ops@vendor.io", risk="high",
          payload={"impersonated": "carol@globex.io", "session": "imp-1"}, impersonation=("ops@vendor.io", "imp-1"))
    s.add(720, "globex", "crawl.run", "bob@globex.io", skip_seq=True)
    # The global kill switch under dual approval (the demo's story); one request still pending.
    s.add(800, "*", "approval.requested", "ops@vendor.io", risk="high", approval="ap-1",
          payload={"action": "killswitch.disable", "requester": "ops@vendor.io"})
    s.add(805, "*", "approval.granted", "alice@acme.io", service="auditrail-approvals", approval="ap-1",
          reason="incident", payload={"action": "killswitch.disable", "requester": "ops@vendor.io"})
    s.checkpoint(805.5, "*", "auditrail-approvals")
    s.add(806, "*", "approval.used", "ops@vendor.io", approval="ap-1", payload={"action": "killswitch.disable"},
          forged_link=True)
    s.add(806.5, "*", "killswitch.disable", "ops@vendor.io", risk="critical", approval="ap-1",
          payload={"feature": "crawl", "scope": "*"})
    s.add(900, "*", "approval.requested", "ops@vendor.io", risk="high", approval="ap-2",
          payload={"action": "killswitch.disable", "requester": "ops@vendor.io"})
    return s


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from auditrail_store.db import Store
    from auditrail_store.ingest import JSON, LogWriter, decode_request
    from auditrail_store.migrate import migrate

    scenario = build_scenario()
    with Store.open(f"chdb://{tmp_path_factory.mktemp('grafana')}/store") as opened:
        migrate(opened)
        writer = LogWriter(opened.client, opened.database)
        bodies = scenario.requests()
        for body in bodies + bodies[:1]:  # the first request twice: a collector retry
            writer.write(decode_request(body, JSON))
        yield opened


def run(store, sql: str, values: dict | None = None, window: tuple[datetime, datetime] = RANGE):
    """The query as Grafana's data source would send it for `window`: (column names, rows)."""
    expanded = expand(sql, *window, values=values or {})
    columns = [row[0] for row in store.query(f"DESCRIBE ({expanded})").result_rows]  # even with no rows
    return columns, store.query(expanded).result_rows


def panel(dashboard, title):
    return next(p for p in dashboard.panels if p.title == title)


ALL_VALUES = {"tenant": ALL, "event_type": ALL, "actor": ALL}


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_every_panel_returns_its_columns_and_an_empty_range_is_no_error(store, dashboard):
    values = dict(ALL_VALUES, tenant="acme" if dashboard is DRILL_DOWN else ALL)
    far = (NOW - timedelta(days=400), NOW - timedelta(days=399))
    for item in dashboard.panels:
        columns, rows = run(store, item.sql, values)
        assert tuple(columns) == item.columns, item.title
        _, empty_rows = run(store, item.sql, values, far)  # (chDB names no columns for no rows)
        if not item.title.startswith(("Chain state", "Unanchored")):  # whole chains, not the range
            assert empty_rows in ([], [(0, 0, 0)]), item.title
    for variable in dashboard.variables:
        run(store, variable.sql, values)


def test_overview_counts_each_event_once_and_finds_what_happened(store):
    _, rows = run(store, panel(OVERVIEW, "Events by type").sql, {"tenant": ALL})
    per_type: dict[str, int] = {}
    for _, series, count in rows:
        per_type[series] = per_type.get(series, 0) + count
    # The retried request (assistant's) is stored twice in otel_logs, counted once here.
    assert per_type["crawl.run"] == 3 and per_type["killswitch.disable"] == 3 and per_type["prompt.update"] == 2
    assert "approval.granted" in per_type and sum(per_type.values()) == 19
    _, rows = run(store, panel(OVERVIEW, "Events by tenant").sql, {"tenant": ["acme", "*"]})
    assert {series for _, series, _ in rows} == {"acme", "*"}
    _, rows = run(store, panel(OVERVIEW, "High and critical actions").sql, {"tenant": "acme"})
    assert [r[2] for r in rows] == ["killswitch.disable", "killswitch.enable", "killswitch.disable",
                                    "policy.update", "prompt.update"]
    _, rows = run(store, panel(OVERVIEW, "Failures").sql, {"tenant": ALL})
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [("acme", "crawl.run", "svc-crawler", "timeout")]
    _, rows = run(store, panel(OVERVIEW, "Top actors").sql, {"tenant": ALL})
    assert rows[0][:3] == ("alice@acme.io", 6, 4) and rows[1][:2] == ("ops@vendor.io", 6)
    _, rows = run(store, panel(OVERVIEW, "Source IPs new this period").sql, {"tenant": ALL})
    # 198.51.100.7 was seen 30 h ago (before the range): not new.
    assert sorted(r[0] for r in rows) == ["192.0.2.44", "203.0.113.5"]


def test_tenant_drill_down_variables_timeline_changes_and_kill_switches(store):
    values = {"tenant": "acme", "event_type": ALL, "actor": ALL}
    _, tenants = run(store, DRILL_DOWN.variables[0].sql)
    assert [t for (t,) in tenants] == ["*", "acme", "globex"]
    _, actors = run(store, DRILL_DOWN.variables[2].sql, values)
    assert [a for (a,) in actors] == ["alice@acme.io", "bob@acme.io", "svc-crawler"]
    columns, rows = run(store, panel(DRILL_DOWN, "Timeline").sql,
                        dict(values, event_type=["prompt.update", "policy.update"], actor=["alice@acme.io"]))
    timeline = [dict(zip(columns, row, strict=True)) for row in rows]
    assert [e["event_type"] for e in timeline] == ["policy.update", "prompt.update"]
    assert json.loads(timeline[1]["before"]) == {"prompt_hash": "aa"}
    assert json.loads(timeline[1]["after"]) == {"prompt_hash": "bb", "version": 2}
    _, rows = run(store, panel(DRILL_DOWN, "Prompt and policy changes").sql, values)
    assert [r[1] for r in rows] == ["policy.update", "prompt.update"]
    columns, rows = run(store, panel(DRILL_DOWN, "Kill switches").sql, values)
    switches = [dict(zip(columns, row, strict=True)) for row in rows]
    assert [(s["feature"], s["disabled_by"], s["enabled_by"]) for s in switches] == [
        ("chat", "bob@acme.io", None), ("crawl", "alice@acme.io", "alice@acme.io")]
    assert switches[1]["disabled_seconds"] == 30 * 60
    open_for = (RANGE[1] - (T0 + timedelta(minutes=600))).total_seconds()
    assert switches[0]["disabled_seconds"] == open_for  # still off: counted to the range's end


def test_impersonation_and_approvals(store):
    columns, rows = run(store, panel(APPROVALS, "Impersonation sessions").sql, {"tenant": ALL})
    [session] = [dict(zip(columns, row, strict=True)) for row in rows]
    assert (session["session"], session["impersonator"], session["impersonated"], session["actions"],
            session["action_types"]) == ("imp-1", "ops@vendor.io", "carol@globex.io", 2,
                                         ["billing.plan.change", "prompt.update"])
    assert session["ended"] - session["started"] == timedelta(minutes=10)
    _, rows = run(store, panel(APPROVALS, "Actions inside impersonation sessions").sql, {"tenant": ["globex"]})
    assert [(r[2], r[3], r[4]) for r in rows] == [("ops@vendor.io", "carol@globex.io", "prompt.update"),
                                                  ("ops@vendor.io", "carol@globex.io", "billing.plan.change")]
    columns, rows = run(store, panel(APPROVALS, "Approvals").sql, {"tenant": ALL})
    approvals = {r[0]: dict(zip(columns, r, strict=True)) for r in rows}
    assert (approvals["ap-1"]["state"], approvals["ap-1"]["decided_by"], approvals["ap-1"]["requester"]) == (
        "used", "alice@acme.io", "ops@vendor.io")
    assert approvals["ap-2"]["state"] == "pending" and approvals["ap-2"]["action"] == "killswitch.disable"
    _, rows = run(store, panel(APPROVALS, "Self-approvals recorded").sql, {"tenant": ALL})
    assert rows == []


def test_integrity_chain_state_lag_services_and_retried_copies(store):
    columns, rows = run(store, panel(INTEGRITY, "Chain state").sql, {"tenant": ALL})
    chains = {(r[0], r[1]): dict(zip(columns, r, strict=True)) for r in rows}
    globex = chains[("globex", "assistant-globex")]
    assert (globex["state"], globex["missing_seqs"], globex["anchored_seq"], globex["unanchored_events"]) == (
        "broken", 1, 2, 6)
    acme = chains[("acme", "assistant-acme")]
    assert (acme["state"], acme["broken_links"], acme["missing_seqs"], acme["anchored_seq"], acme["last_seq"]) == (
        "unanchored tail", 0, 0, 5, 9)
    forged = chains[("*", "assistant-*")]
    assert (forged["state"], forged["broken_links"], forged["missing_seqs"]) == ("broken", 1, 0)
    approvals = chains[("*", "auditrail-approvals-*")]
    assert (approvals["state"], approvals["unanchored_events"]) == ("ok", 0)
    _, rows = run(store, panel(INTEGRITY, "Unanchored tails").sql, {"tenant": ["acme"]})
    assert [(r[0], r[2]) for r in rows] == [("acme", 4)]
    _, rows = run(store, panel(INTEGRITY, "Events per source service").sql, {"tenant": ALL})
    assert {series for _, series, _ in rows} == {"assistant", "auditrail-approvals"}
    _, rows = run(store, panel(INTEGRITY, "Ingest lag (s)").sql, {"tenant": ALL})
    assert rows and all(p50 > 0 for _, p50, _, _ in rows)  # stored now, stamped hours ago
    _, rows = run(store, panel(INTEGRITY, "Retried copies in otel_logs").sql, {"tenant": ALL})
    # 19 events in the range, the 17 of the service "assistant" delivered twice.
    assert rows == [(36, 19, 17)]


def transformed(transformations: tuple[dict, ...], columns: list[str], rows: list[tuple]) -> tuple[list, list]:
    """What Grafana's transformations the dashboards use (filterByValue greater, organize, sortBy) make of rows."""
    for step in transformations:
        options = step["options"]
        if step["id"] == "filterByValue":
            [rule] = options["filters"]
            assert options["type"] == "include" and rule["config"]["id"] == "greater"
            at, bound = columns.index(rule["fieldName"]), rule["config"]["options"]["value"]
            rows = [r for r in rows if r[at] > bound]
        elif step["id"] == "organize":
            kept = sorted((c for c in columns if not options["excludeByName"].get(c)),
                          key=lambda c: options["indexByName"][c])
            rows = [tuple(r[columns.index(c)] for c in kept) for r in rows]
            columns = kept
        else:
            assert step["id"] == "sortBy"
            [rule] = options["sort"]
            rows = sorted(rows, key=lambda r: r[columns.index(rule["field"])], reverse=rule["desc"])
    return columns, rows


@pytest.mark.parametrize("tenant", [ALL, ["acme"], ["globex", "*"]], ids=str)
def test_a_panel_that_reuses_another_panels_rows_shows_what_its_sql_says(store, tenant):
    reusing = [(d, p) for d in DASHBOARDS for p in d.panels if p.reuses]
    assert reusing
    for dashboard, item in reusing:
        columns, rows = run(store, panel(dashboard, item.reuses).sql, {"tenant": tenant})
        columns, rows = transformed(item.transformations, columns, rows)
        expected_columns, expected = run(store, item.sql, {"tenant": tenant})
        assert (columns, sorted(rows)) == (expected_columns, sorted(expected)), item.title
        key = columns.index("unanchored_events")
        assert [r[key] for r in rows] == [r[key] for r in expected]  # the same order (ties aside)
        assert tenant != ALL or rows  # there are rows to compare


def test_conditional_all_and_quoting_follow_the_data_source():
    sql = "SELECT 1 WHERE $__conditionalAll(a IN (${v:singlequote}), $v) AND $__timeFilter(t) AND x = $__interval_s"
    start, end = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert expand(sql, start, end, {"v": ALL}, timedelta(minutes=5)) == (
        "SELECT 1 WHERE 1=1 AND t >= toDateTime(1767225600) AND t <= toDateTime(1767312000) AND x = 300")
    assert expand(sql, start, end, {"v": ["o'brien", "b"]}, timedelta(seconds=0)).startswith(
        "SELECT 1 WHERE a IN ('o\\'brien','b') AND")
    assert expand(sql, start, end, {"v": ["b"]}).endswith("x = 120")  # 24 h over 1000 points: 86.4 s -> the 2 min step
    with pytest.raises(ValueError, match="unexpanded"):
        expand("SELECT $__timeInterval(t)", start, end)


def test_the_dashboards_validate_with_the_foundation_sdk_and_regenerate_without_a_diff(tmp_path):
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

    register_default_plugins()
    generate.register_clickhouse()
    for dashboard in DASHBOARDS:
        path = REPO / "grafana" / "dashboards" / f"{dashboard.uid}.json"
        committed = json.loads(path.read_text())
        model = DashboardModel.from_json(committed)
        assert model.uid == dashboard.uid and len(model.panels) == len(dashboard.panels)
        # read back through the SDK's types and written again: nothing lost or unknown to them
        assert json.loads(json.dumps(model, cls=JSONEncoder)) == committed
        ids = {p["title"]: p["id"] for p in committed["panels"]}
        for spec, built in zip(dashboard.panels, committed["panels"], strict=True):
            if spec.reuses:  # the other panel's rows, transformed: no query of its own
                assert built["targets"] == [{"datasource": generate.REUSED_ROWS, "panelId": ids[spec.reuses],
                                             "refId": "A"}] and built["datasource"] == generate.REUSED_ROWS
                assert built["transformations"] == list(spec.transformations), spec.title
            else:
                assert [t["rawSql"] for t in built["targets"]] == [spec.sql], spec.title
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(REPO / "grafana" / "generate.py"), "--out", str(out)], check=True)
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        assert (out / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs from the generator's"
    assert queries.DATASOURCE["uid"] in (REPO / "grafana" / "provisioning" / "datasources" /
                                         "clickhouse-server.yaml").read_text()


_BACKFILL = """
import sys
from auditrail_store import migrate as migrate_module
from auditrail_store.db import Store
from auditrail_store.ingest import JSON, LogWriter, decode_request
from test_grafana_queries import build_scenario
every = migrate_module.load_migrations()
with Store.open(sys.argv[1]) as store:
    migrate_module.load_migrations = lambda: [m for m in every if m.version < 31]
    migrate_module.migrate(store)
    writer = LogWriter(store.client, store.database)
    for body in build_scenario().requests():
        writer.write(decode_request(body, JSON))
    migrate_module.load_migrations = lambda: every
    print(migrate_module.migrate(store))
    # read as the panel reads it (GROUP BY): later migrations (0036) may add rows for the same addresses
    print(store.query("SELECT tenant_id, source_ip FROM auditrail.source_ips GROUP BY 1, 2 ORDER BY 1, 2").result_rows)
"""


def test_source_ips_is_backfilled_from_the_events_stored_before_its_migration(tmp_path):
    done = subprocess.run([sys.executable, "-c", _BACKFILL, f"chdb://{tmp_path}/store"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stderr[-3000:]
    applied, rows = done.stdout.strip().splitlines()[-2:]
    assert "0031_source_ips" in applied
    assert rows == str([("acme", "198.51.100.7"), ("acme", "203.0.113.5"), ("globex", "192.0.2.44"),
                        ("globex", "198.51.100.8")])


_REAL_CHAINS = """
import json
import sys
from pathlib import Path
from auditrail_store.db import Store
from auditrail_store.ingest import JSON, LogWriter, decode_request
from auditrail_store.migrate import migrate
from test_store_service import generate_events
lines = generate_events(Path(sys.argv[2]), 23)
with Store.open(sys.argv[1]) as store:
    migrate(store)
    writer = LogWriter(store.client, store.database)
    for line in lines + lines[:3]:  # three requests delivered twice
        writer.write(decode_request(line, JSON))
    print(json.dumps(store.query("SELECT tenant_id, state, events, missing_seqs, broken_links, anchored_seq,"
                                 " last_seq, unanchored_events FROM auditrail.chain_state ORDER BY tenant_id").result_rows))
"""


def test_chain_state_of_chains_the_sdk_really_links_and_signs(tmp_path):
    """Events emitted by auditrail itself (hash-linked, a signed checkpoint every 5): no chain is broken."""
    done = subprocess.run([sys.executable, "-c", _REAL_CHAINS, f"chdb://{tmp_path}/store", str(tmp_path / "gen")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r[0] for r in rows] == ["acme", "globex", "initech"]
    for tenant, state, _events, missing, broken, anchored, last, unanchored in rows:
        assert (missing, broken) == (0, 0), tenant
        assert anchored > 0 and unanchored == last - anchored and state in ("ok", "unanchored tail"), rows
    assert sum(r[2] for r in rows) >= 23  # the 23 events and the checkpoints, each once


_MERGED = """
import json
import sys
from auditrail_store.db import Store
from auditrail_store.ingest import JSON, LogWriter, decode_request
from auditrail_store.migrate import migrate
from test_grafana_queries import build_scenario
with Store.open(sys.argv[1]) as store:
    migrate(store)
    writer = LogWriter(store.client, store.database)
    requests = build_scenario().requests()
    for body in requests + requests[:1]:  # the first request delivered twice
        writer.write(decode_request(body, JSON))
    # and a few granules of history (30 days, 3 tenants), so a day's read selects ranges by the time index
    store.command("INSERT INTO auditrail.audit_events (event_id, event_type, timestamp, tenant_id, service_name,"
                  " severity_text, severity_number) SELECT generateUUIDv7(number), 'crawl.run',"
                  " now64(9) - INTERVAL 30 DAY + toIntervalSecond(number * 40), ['h1', 'h2', 'h3'][number % 3 + 1],"
                  " 'crawler', 'INFO', 9 FROM numbers(60000)")
    def read():
        plan = store.query("EXPLAIN PIPELINE SELECT count() FROM auditrail.audit_events_unique"
                           " WHERE timestamp > now() - INTERVAL 1 DAY").result_rows
        rows = store.query("SELECT tenant_id, event_type, count() FROM auditrail.audit_events_unique"
                           " GROUP BY ALL ORDER BY ALL").result_rows
        return ["ReplacingSorted" in str(plan), rows]
    before = read()
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    print(json.dumps([before, read(), store.query("SELECT count() FROM system.parts WHERE active"
                      " AND database = 'auditrail' AND table = 'audit_events'").result_rows[0][0]]))
"""


def test_the_events_view_merges_copies_until_the_table_is_one_merged_part_then_reads_it_as_it_is(tmp_path):
    """Migration 0035: a merged audit_events is read without FINAL's merge, with the same rows as before."""
    done = subprocess.run([sys.executable, "-c", _MERGED, f"chdb://{tmp_path}/store"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stderr[-3000:]
    (merging, rows), (merging_after, rows_after), parts = json.loads(done.stdout.strip().splitlines()[-1])
    assert merging and rows and rows_after == rows  # parts not merged yet: FINAL merges the copies
    assert parts == 1 and not merging_after  # one merged part: read as it is, each event once
