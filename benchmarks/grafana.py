"""Grafana dashboard refreshes on the engine (issue 19's Performance section).

Fills an embedded store with --rows generated audit events over 30 days (100 tenants, 1000 actors, a dozen
event types, impersonations, approvals, one hash chain per tenant), inserted into otel_logs so the
materialized view types them into audit_events as ingest does, then merged. Then, per dashboard and range
(24 h, 30 days), runs every panel's query as the ClickHouse data source sends it (grafana/queries.py,
variables at All) one after another, --repeats times, and reports the p50 of a whole refresh (wall clock and
the CPU time this process spent: chDB runs in it, and CPU time is what a busy shared machine distorts
least) and its slowest panel. Results are read as Native, the format the data source's client asks for.
Grafana runs a dashboard's panels concurrently; the sum here is the engine work of one refresh.

    .venv/bin/python benchmarks/grafana.py [--rows 10000000] [--repeats 7] [--store DIR] [--only UID]

`engine_refreshes(store, repeats)` returns the figures; the HTTP interface's comparison reuses
queries.dashboard_queries for the same SQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grafana.queries import ALL, DASHBOARDS, dashboard_queries  # noqa: E402

# One INSERT ... SELECT per million rows. Event types by weight; risk, actors, addresses, sessions and
# approvals derived from the row number so every panel has data to chew on.
_FILL = """
INSERT INTO auditrail.otel_logs (Timestamp, SeverityText, SeverityNumber, ServiceName, Body, ScopeName,
                                 LogAttributes, EventName)
SELECT ts, 'INFO', 9, ['assistant', 'billing', 'crawler'][1 + number % 3], type, 'auditrail',
       mapUpdate(map('audit.event_id', toString(generateUUIDv7(number)), 'audit.tenant_id', tenant,
                     'enduser.id', concat('user', toString(number % 1000), '@', tenant, '.io'),
                     'client.address', concat('10.', toString(number % 50), '.', toString(intDiv(number, 7) % 100), '.1'),
                     'audit.risk', multiIf(type IN ('killswitch.disable', 'admin.impersonation.start'), 'critical',
                                           type IN ('prompt.update', 'policy.update', 'billing.plan.change'), 'high',
                                           'low'),
                     'audit.outcome', if(number % 50 = 0, 'failure', 'success'),
                     'audit.payload', concat('{"before":{"v":', toString(number % 7), '},"after":{"v":',
                                             toString(number % 11), '},"feature":"f', toString(number % 5), '"}'),
                     'audit.chain.id', concat('chain-', tenant),
                     'audit.chain.seq', toString(intDiv(number, {tenants:UInt32}) + 1)),
                 if(number % 100 < 2, map('audit.impersonator.id', 'ops@vendor.io',
                                          'audit.impersonation.id', concat('imp-', toString(intDiv(number, 1000)))),
                    if(startsWith(type, 'approval.'), map('audit.approval.id', concat('ap-', toString(intDiv(number, 40)))),
                       map()))),
       type
FROM (
    SELECT number, fromUnixTimestamp64Nano(toInt64({start:Int64} + number * {step:Int64})) AS ts,
           concat('t', toString(number % {tenants:UInt32})) AS tenant,
           ['crawl.run', 'crawl.run', 'crawl.run', 'crawl.run', 'chat.message', 'chat.message', 'prompt.update',
            'policy.update', 'billing.plan.change', 'killswitch.disable', 'killswitch.enable',
            'admin.impersonation.start', 'approval.requested', 'approval.granted', 'audit.checkpoint',
            'crawl.run'][1 + cityHash64(number) % 16] AS type
    FROM numbers({offset:UInt64}, {count:UInt64})
)
"""

RANGES = {"24h": timedelta(hours=24), "30d": timedelta(days=30)}


def fill(store: Any, rows: int, days: int = 30, tenants: int = 100) -> float:
    """Generate `rows` events over the last `days` into a migrated store; seconds taken (merge included)."""
    started = time.perf_counter()
    start = time.time_ns() - days * 86_400 * 10**9
    step = days * 86_400 * 10**9 // rows
    for offset in range(0, rows, 1_000_000):
        store.command(_FILL, {"start": start, "step": step, "tenants": tenants, "offset": offset,
                              "count": min(1_000_000, rows - offset)})
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    return time.perf_counter() - started


def engine_refreshes(store: Any, repeats: int, only: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """p50 of each dashboard's full refresh per range, with its slowest panel's p50, on the engine."""
    now = datetime.now(timezone.utc)
    values = {"tenant": ALL, "event_type": ALL, "actor": ALL}
    figures = {}
    for dashboard in (d for d in DASHBOARDS if only in (None, d.uid)):
        for label, span in RANGES.items():
            # The drill-down is one tenant's; the others run over every tenant (All).
            chosen = dict(values, tenant="t7") if dashboard.uid == "auditrail-tenant" else values
            sqls = dashboard_queries(dashboard, now - span, now, chosen)
            totals, cpu, per_panel = [], [], {title: [] for title in sqls}
            for _ in range(repeats):
                started, cpu_started = time.perf_counter(), time.process_time()
                for title, sql in sqls.items():
                    at = time.perf_counter()
                    store.client.raw_query(sql, fmt="Native")
                    per_panel[title].append(time.perf_counter() - at)
                totals.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            slowest = max(per_panel, key=lambda t: statistics.median(per_panel[t]))
            figures[(dashboard.title, label)] = {"p50_ms": statistics.median(totals) * 1000, "panels": len(sqls),
                                                 "cpu_p50_ms": statistics.median(cpu) * 1000,
                                                 "slowest": slowest,
                                                 "slowest_ms": statistics.median(per_panel[slowest]) * 1000}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--store", type=Path, help="reuse (or create) this store directory")
    parser.add_argument("--only", choices=[d.uid for d in DASHBOARDS], help="one dashboard")
    args = parser.parse_args()
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    directory = args.store or Path(tempfile.mkdtemp(prefix="auditrail-grafana-"))
    with Store.open(f"chdb://{directory}/store") as store:
        migrate(store)
        present = store.query("SELECT count() FROM auditrail.audit_events").result_rows[0][0]
        if present < args.rows:
            print(f"filling {args.rows:,} events ...", flush=True)
            print(f"filled in {fill(store, args.rows):.0f} s", flush=True)
        events = store.query("SELECT count() FROM auditrail.audit_events_unique").result_rows[0][0]
        print(f"{events:,} events, {os.cpu_count()} CPUs (shared: read the ratios), {args.repeats} refreshes each")
        print(f"load average {os.getloadavg()[0]:.1f} at the start")
        print(f"{'dashboard':30} {'range':5} {'panels':>6} {'p50 refresh':>12} {'CPU p50':>9}  slowest panel (p50)")
        for (title, label), f in engine_refreshes(store, args.repeats, args.only).items():
            print(f"{title:30} {label:5} {f['panels']:6} {f['p50_ms']:9.0f} ms {f['cpu_p50_ms']:6.0f} ms  "
                  f"{f['slowest']} ({f['slowest_ms']:.0f} ms)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
