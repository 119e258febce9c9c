"""Grafana on the embedded store: the read-only HTTP interface beside the same SQL on the engine, one run.

Fills an embedded store (storage.py's generator: --rows events over 30 days, 100 tenants), then runs a
dashboard refresh (QUERIES: the overview's shapes, typed audit_events, a 24 h range) --repeats times
two ways in this process, on the same engine: directly on a chDB session (Native, the engine's cost), and
through GrafanaInterface over HTTP (Native, as clickhouse-go asks), for an all-tenant read token and for a
one-tenant token (its engine baseline: a session with the same additional_table_filters, the same rows).
Prints p50 per refresh and the interface's overhead (target: at most 15 %).

    .venv/bin/python benchmarks/grafana_http.py [--rows 1000000] [--repeats 21]

Dashboards may replace QUERIES with their panels' expanded SQL (run_refresh takes any list).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from storage import fill  # benchmarks/storage.py: the shared event generator

QUERIES = [
    "SELECT toStartOfHour(timestamp) AS t, event_type, count() FROM auditrail.audit_events_unique"
    " WHERE timestamp >= {since} GROUP BY t, event_type ORDER BY t",
    "SELECT risk, count() FROM auditrail.audit_events_unique WHERE timestamp >= {since} GROUP BY risk",
    "SELECT tenant_id, count() AS n FROM auditrail.audit_events_unique WHERE timestamp >= {since}"
    " GROUP BY tenant_id ORDER BY n DESC LIMIT 20",
    "SELECT actor, count() AS n FROM auditrail.audit_events_unique WHERE timestamp >= {since}"
    " GROUP BY actor ORDER BY n DESC LIMIT 10",
    "SELECT timestamp, tenant_id, actor, event_type, outcome FROM auditrail.audit_events_unique"
    " WHERE timestamp >= {since} AND risk IN ('high', 'critical') ORDER BY timestamp DESC LIMIT 100",
]


def run_refresh(run, queries: list[str], since: str) -> float:
    """Seconds for one refresh: every query, one after the other (as a dashboard's panels on one connection)."""
    started = time.perf_counter()
    for sql in queries:
        run(sql.format(since=since))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storage"))
    import chdb

    from auditrail_store.db import Store, engine_connection_string
    from auditrail_store.grafana import GrafanaInterface
    from auditrail_store.tokens import TokenStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-grafana-"))
    url = f"chdb://{tmp}/store"
    print(f"filling {args.rows} events ...", flush=True)
    fill(url, args.rows, 30, 100)
    store = Store.open(url)
    tokens = TokenStore(store)
    read_all, _ = tokens.create("*", "read")
    read_one, _ = tokens.create("t7", "read")
    interface = GrafanaInterface(str(tmp / "store"), store.database, tokens).start()
    engines = {scope: chdb.connect(engine_connection_string(str(tmp / "store"))) for scope in ("*", "t7")}
    engines["t7"].query(f"SET additional_table_filters = {interface.table_filters('t7')}")
    since = "now() - INTERVAL 1 DAY"
    results: dict[tuple[str, str], list[float]] = {}
    try:
        runs = {}
        for scope, token in (("*", read_all), ("t7", read_one)):
            client = httpx.Client(base_url=interface.url, auth=("grafana", token), timeout=120,
                                  params={"default_format": "Native"})
            runs[(scope, "engine")] = lambda sql, c=engines[scope]: c.query(sql, "Native").bytes()
            runs[(scope, "interface")] = lambda sql, c=client: c.post("/", content=sql).raise_for_status()
        for _ in range(2):  # warm: caches, marks, the first session
            for run in runs.values():
                run_refresh(run, QUERIES, since)
        for _ in range(args.repeats):  # interleaved, so load drifts hit every way alike
            for key, run in runs.items():
                results.setdefault(key, []).append(run_refresh(run, QUERIES, since))
    finally:
        interface.close()
        for engine in engines.values():
            engine.close()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(QUERIES)} queries per refresh, {args.rows} events, 24 h range, p50 of {args.repeats}:")
    for scope in ("*", "t7"):
        base = statistics.median(results[(scope, "engine")])
        p50 = statistics.median(results[(scope, "interface")])
        print(f"  token {scope:3s} engine {base * 1000:8.1f} ms   interface {p50 * 1000:8.1f} ms   "
              f"{(p50 / base - 1) * 100:+.1f} %  ({(p50 - base) * 1000 / len(QUERIES):+.2f} ms a query)")


if __name__ == "__main__":
    main()
