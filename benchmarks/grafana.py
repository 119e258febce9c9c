"""Grafana dashboard refreshes on the engine and through the read-only HTTP interface (issue 19, Performance).

Fills an embedded store with --rows generated audit events over 30 days (100 tenants, 1000 actors, a dozen
event types, impersonations, approvals, one hash chain per tenant), inserted into otel_logs so the
materialized view types them into audit_events as ingest does, then merged. Then, per dashboard and range
(24 h, 30 days), runs every panel's query as the ClickHouse data source sends it (grafana/queries.py,
variables at All; the tenant drill-down on one tenant; each round's range ends when the round starts, so each
refresh sends new time bounds as Grafana's do) one after another, four ways in interleaved rounds (so load
drifts hit every way alike, and every way of a round runs the same SQL), on the same engine in this process:

- engine, all tenants: a chDB session, result in Native (the engine's cost);
- interface, all-tenant read token: GrafanaInterface (a thread of this process, as in `auditrail serve`) over
  HTTP, its client in a process of its own as Grafana is (tests/grafana_go/cmd/grafana_go, built with the Go
  toolchain): by default the data source's requests sent raw (the SQL POSTed, Native, Basic auth, keep-alive) and the
  whole answer read, nothing decoded, as the engine's way decodes nothing: the interface's own cost;
  `--client clickhouse-go`: the data source's client library, every row scanned into Go values (what Grafana
  spends too: ~1.4 ms of CPU a query here, +270 ms on the 248k rows of 30 days of approvals);
  `--client clickhouse-connect`, or without Go: in this process (~0.5 ms of Python a query, sharing the GIL
  with the server);
- engine, one tenant: a chDB session with the interface's additional_table_filters for that tenant;
- interface, that tenant's read token.

Prints the p50 of a whole refresh each way with the interface/engine ratio, the CPU time this process
spent on the engine's refresh (chDB runs in it; the steadier figure on a busy shared machine) and its
slowest panel, the CPU the interface adds a query (server and client) and how much of it is the client's,
then the two targets (a 24 h overview refresh under 300 ms on the engine; the interface adds at most 15 %)
as PASS/FAIL with the load average. Grafana runs a dashboard's panels concurrently;
the sum here is the work of one refresh.

    .venv/bin/python benchmarks/grafana.py [--rows 10000000] [--repeats 7] [--store DIR] [--only UID] [--unmerged N]
                                           [--before] [--client raw|clickhouse-go|clickhouse-connect]

--unmerged N measures a live store instead of a merged one: N more inserts of 1,000 events over the last 10
minutes, their parts left unmerged (merges of audit_events stopped), as a store under steady ingest has them.
--before also times the engine on audit_events as migration 0012 ordered it ((tenant_id, event_key), before
0036): a copy of the table with the same rows, merged, and the same unmerged parts, read through a copy of
the events view; two more ways in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/go_tool.py; the Go client is tests/grafana_go's cmd/grafana_go

from go_tool import find_go  # noqa: E402
from grafana.queries import ALL, DASHBOARDS, dashboard_queries  # noqa: E402

TENANT = "t7"  # the one-tenant token's tenant, and the drill-down's
CLIENTS = {"raw": "raw HTTP from Go, its own process", "clickhouse-go": "clickhouse-go, rows scanned, its own process",
           "clickhouse-connect": "clickhouse-connect, this process"}
OVERVIEW_TARGET_MS = 300
INTERFACE_TARGET = 1.15

# One INSERT ... SELECT per million rows. Event types by weight; risk, actors, addresses, sessions and
# approvals derived from the row number so every panel has data to chew on; event ids are UUIDv7 of the
# event's time (emitters' ids: instrumentation/auditrail), so each tenant's rows lie in time order.
_FILL = """
INSERT INTO auditrail.otel_logs (Timestamp, SeverityText, SeverityNumber, ServiceName, Body, ScopeName,
                                 LogAttributes, EventName)
SELECT ts, 'INFO', 9, ['assistant', 'billing', 'crawler'][1 + number % 3], type, 'auditrail',
       mapUpdate(map('audit.event_id', event_id, 'audit.tenant_id', tenant,
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
           -- a UUIDv7 of the event's time, as emitters make them (audit_events is ordered by it, 0012)
           concat(substring(ms, 1, 8), '-', substring(ms, 9, 4), '-7', substring(r, 1, 3), '-8', substring(r, 4, 3),
                  '-', substring(r, 7, 12)) AS event_id,
           concat('t', toString(number % {tenants:UInt32})) AS tenant,
           ['crawl.run', 'crawl.run', 'crawl.run', 'crawl.run', 'chat.message', 'chat.message', 'prompt.update',
            'policy.update', 'billing.plan.change', 'killswitch.disable', 'killswitch.enable',
            'admin.impersonation.start', 'approval.requested', 'approval.granted', 'audit.checkpoint',
            'crawl.run'][1 + cityHash64(number) % 16] AS type
    FROM (SELECT number, leftPad(lower(hex(intDiv({start:Int64} + number * {step:Int64}, 1000000))), 12, '0') AS ms,
                 lower(hex(sipHash128(number))) AS r
          FROM numbers({offset:UInt64}, {count:UInt64}))
)
"""

RANGES = {"24h": timedelta(hours=24), "30d": timedelta(days=30)}
BEFORE = "audit_events_0012"  # --before: audit_events as ordered before migration 0036
BEFORE_VIEW = "audit_events_unique_0012"


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


def _copy(store: Any, target: str, where: str = "1") -> None:
    """Rows of audit_events into `target`, with their versions (the MATERIALIZED keys are computed again)."""
    columns = ", ".join(name for (name,) in store.query(
        "SELECT name FROM system.columns WHERE database = 'auditrail' AND table = 'audit_events'"
        " AND default_kind != 'MATERIALIZED'").result_rows)
    store.command(f"INSERT INTO auditrail.{target} ({columns}, ver) SELECT {columns}, ver FROM auditrail.audit_events"
                  f" WHERE {where} SETTINGS insert_allow_materialized_columns = 1")


def before_0036(store: Any) -> None:
    """--before: audit_events ordered as migration 0012 did, same rows, merged; its events view as 0035's."""
    if store.query(f"EXISTS TABLE auditrail.{BEFORE}").result_rows[0][0]:
        return
    store.command(f"CREATE TABLE auditrail.{BEFORE} AS auditrail.audit_events ENGINE = ReplacingMergeTree(ver)"
                  " ORDER BY (tenant_id, event_key)")
    _copy(store, BEFORE)
    store.command(f"OPTIMIZE TABLE auditrail.{BEFORE} FINAL")
    store.command(f"CREATE VIEW auditrail.{BEFORE_VIEW} AS SELECT * FROM auditrail.{BEFORE} FINAL"
                  " SETTINGS do_not_merge_across_partitions_select_final = 1")


def _parts(store: Any) -> set[str]:
    return {name for (name,) in store.query("SELECT name FROM system.parts WHERE active AND database = 'auditrail'"
                                            " AND table = 'audit_events'").result_rows}


def unmerged(store: Any, rows: int, parts: int, per_part: int = 1000, tenants: int = 100,
             before: bool = False) -> None:
    """`parts` more inserts of `per_part` events over the last 10 minutes, left unmerged (audit_events' merges
    stopped): a live store, whose newest parts the background merges have not caught up with. With `before`,
    each new part is copied into the --before table as its own part too."""
    for table in ("audit_events", BEFORE) if before else ("audit_events",):
        store.command(f"SYSTEM STOP MERGES auditrail.{table}")
    step = 600 * 10**9 // (parts * per_part)
    start = time.time_ns() - 600 * 10**9 - rows * step  # numbers from `rows` on: new ids, the last 10 minutes
    for part in range(parts):
        present = _parts(store) if before else set()
        store.command(_FILL, {"start": start, "step": step, "tenants": tenants, "offset": rows + part * per_part,
                              "count": per_part})
        for name in sorted(_parts(store) - present) if before else ():
            _copy(store, BEFORE, f"_part = '{name}'")


def refresh(run: Callable[[str], Any], sqls: dict[str, str], panels: dict[str, list[float]] | None = None) -> float:
    """Seconds for one refresh: every panel's query, one after the other; each panel's time into `panels`."""
    started = time.perf_counter()
    for title, sql in sqls.items():
        at = time.perf_counter()
        run(sql)
        if panels is not None:
            panels.setdefault(title, []).append(time.perf_counter() - at)
    return time.perf_counter() - started


def refreshes(ways: dict[tuple[str, str], Callable[[str], Any]], repeats: int, only: str | None = None,
              client_cpu: Callable[[], float] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Per dashboard and range: p50 of a refresh each way (interleaved rounds), engine CPU and slowest panel.
    Each round ends its range at the time it starts, so its queries carry new time bounds, as the data source
    sends every refresh (the same SQL for every way of the round)."""
    values = {"tenant": ALL, "event_type": ALL, "actor": ALL}
    figures = {}
    for dashboard in (d for d in DASHBOARDS if only in (None, d.uid)):
        for label, span in RANGES.items():
            chosen = dict(values, tenant=TENANT) if dashboard.uid == "auditrail-tenant" else values

            def queries(dashboard: Any = dashboard, span: timedelta = span, chosen: dict = chosen) -> dict[str, str]:
                now = datetime.now(timezone.utc)
                return dashboard_queries(dashboard, now - span, now, chosen)

            warm = queries()
            for run in ways.values():  # warm: marks, caches, the HTTP connection
                refresh(run, warm)
            times: dict[tuple[str, str], list[float]] = {way: [] for way in ways}
            cpu: dict[tuple[str, str], list[float]] = {way: [] for way in ways}
            client: dict[tuple[str, str], list[float]] = {way: [] for way in ways}
            panels: dict[str, list[float]] = {}
            for _ in range(repeats):
                sqls = queries()
                for way, run in ways.items():
                    cpu_started, thread_started = time.process_time(), time.thread_time()
                    own_started = client_cpu() if client_cpu else 0.0
                    times[way].append(refresh(run, sqls, panels if way == ("*", "engine") else None))
                    # The interface's client: grafana_go in its own process (`client_cpu`), or clickhouse-connect
                    # in this thread (its server in another); counted either way.
                    own = client_cpu() - own_started if client_cpu else 0.0
                    cpu[way].append(time.process_time() - cpu_started + own)
                    client[way].append(own if client_cpu else time.thread_time() - thread_started)
            slowest = max(panels, key=lambda t: statistics.median(panels[t]))
            figures[(dashboard.title, label)] = {
                "panels": len(warm), "p50_ms": {way: statistics.median(t) * 1000 for way, t in times.items()},
                "cpu_p50_ms": statistics.median(cpu[("*", "engine")]) * 1000,
                "cpu_ms": {way: statistics.median(c) * 1000 for way, c in cpu.items()}, "slowest": slowest,
                "client_ms": {way: statistics.median(c) * 1000 for way, c in client.items()},
                "slowest_ms": statistics.median(panels[slowest]) * 1000}
    return figures


def on_before_0036(sql: str) -> str:
    """The query on the --before table and view instead of audit_events and audit_events_unique."""
    return (sql.replace("auditrail.audit_events_unique", f"auditrail.{BEFORE_VIEW}")
            .replace("auditrail.audit_events ", f"auditrail.{BEFORE} ").replace("auditrail.audit_events\n",
                                                                                f"auditrail.{BEFORE}\n"))


class GoClient:
    """tests/grafana_go/cmd/grafana_go in a process of its own, as Grafana is: the data source's requests sent raw
    (`mode` raw) or through clickhouse-go with every row scanned (clickhouse-go); one query at a time. `cpu()`: its
    CPU seconds."""

    def __init__(self, go: str, mode: str, address: str, tokens: list[str], build_dir: Path) -> None:
        binary = build_dir / "grafana_go"
        subprocess.run([go, "build", "-o", str(binary), "./cmd/grafana_go"], cwd=ROOT / "tests" / "grafana_go",
                       check=True, timeout=900)
        self._process = subprocess.Popen([str(binary), mode, address, *tokens], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1)
        import psutil

        self._usage = psutil.Process(self._process.pid)

    def query(self, index: int, sql: str) -> int:
        """Rows (clickhouse-go) or bytes (raw) of `sql` run with the `index`-th token; RuntimeError with the
        client's message on an error."""
        self._process.stdin.write(f"{index}\t{json.dumps(sql)}\n")
        status, _, value = self._process.stdout.readline().rstrip("\n").partition("\t")
        if status != "ok":
            raise RuntimeError(f"grafana_go: {json.loads(value) if value else 'the client stopped'}")
        return int(value)

    def cpu(self) -> float:
        return sum(self._usage.cpu_times()[:2])

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(timeout=30)


def ways(directory: Path, store: Any, before: bool = False, client: str = "raw",
         ) -> tuple[dict[tuple[str, str], Callable[[str], Any]], Callable[[], None], Callable[[], float] | None]:
    """The four ways to run a query, by (token tenant, engine|interface|before), how to close them and the CPU
    seconds of the interface's client so far when it runs in a process of its own (grafana_go; None for
    clickhouse-connect, which runs in this thread); with `before`, the engine's two on the --before table too."""
    import chdb
    import clickhouse_connect

    from auditrail_store.db import engine_connection_string
    from auditrail_store.grafana import GrafanaInterface
    from auditrail_store.tokens import TokenStore

    tokens = TokenStore(store)
    interface = GrafanaInterface(str(directory / "store"), store.database, tokens).start()
    port = int(interface.url.rsplit(":", 1)[1])
    engines = {scope: chdb.connect(engine_connection_string(str(directory / "store"))) for scope in ("*", TENANT)}
    engines[TENANT].query(f"SET additional_table_filters = {interface.table_filters(TENANT)}")
    runs: dict[tuple[str, str], Callable[[str], Any]] = {}
    secrets = [tokens.create(scope, "read", description="benchmarks/grafana.py")[0] for scope in ("*", TENANT)]
    clients: list[Any] = []
    go = None if client == "clickhouse-connect" else GoClient(find_go(), client, f"127.0.0.1:{port}", secrets, directory)
    for index, scope in enumerate(("*", TENANT)):
        runs[(scope, "engine")] = lambda sql, c=engines[scope]: c.query(sql, "Native").bytes()
        if go is not None:
            runs[(scope, "interface")] = lambda sql, i=index: go.query(i, sql)
        else:
            clients.append(clickhouse_connect.get_client(host="127.0.0.1", port=port, username="grafana",
                                                         password=secrets[index], database=store.database,
                                                         send_receive_timeout=300))
            runs[(scope, "interface")] = lambda sql, c=clients[-1]: c.raw_query(sql, fmt="Native")
    for scope in ("*", TENANT) if before else ():
        runs[(scope, "before")] = lambda sql, c=engines[scope]: c.query(on_before_0036(sql), "Native").bytes()

    def close() -> None:
        for c in clients:
            c.close()
        if go is not None:
            go.close()
        interface.close()
        for engine in engines.values():
            engine.close()

    return runs, close, (go.cpu if go is not None else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--store", type=Path, help="reuse (or create) this store directory (kept)")
    parser.add_argument("--only", choices=[d.uid for d in DASHBOARDS], help="one dashboard")
    parser.add_argument("--unmerged", type=int, default=0, metavar="N",
                        help="then N inserts of 1,000 recent events left unmerged, as in a live store (adds them "
                             "to a --store: use a copy)")
    parser.add_argument("--client", choices=tuple(CLIENTS),
                        help="the interface's client: the data source's requests sent raw from a Go process (the "
                             "default when Go is installed), clickhouse-go with every row scanned, or "
                             "clickhouse-connect in this process")
    parser.add_argument("--before", action="store_true",
                        help="also time the engine on audit_events as ordered before migration 0036 (same rows)")
    args = parser.parse_args()
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    directory = args.store or Path(tempfile.mkdtemp(prefix="auditrail-grafana-"))
    try:
        with Store.open(f"chdb://{directory}/store") as store:
            migrate(store)
            present = store.query("SELECT count() FROM auditrail.audit_events").result_rows[0][0]
            if present < args.rows:
                print(f"filling {args.rows:,} events ...", flush=True)
                print(f"filled in {fill(store, args.rows):.0f} s", flush=True)
            if args.before:
                before_0036(store)
            if args.unmerged:
                unmerged(store, args.rows, args.unmerged, before=args.before)
            events = store.query("SELECT count() FROM auditrail.audit_events_unique").result_rows[0][0]
            parts = store.query("SELECT count() FROM system.parts WHERE active AND database = 'auditrail'"
                                " AND table = 'audit_events'").result_rows[0][0]
            client = args.client or ("raw" if find_go() else "clickhouse-connect")
            runs, close, client_cpu = ways(directory, store, args.before, client)
            try:
                load_start = os.getloadavg()[0]
                print(f"{events:,} events in {parts} parts, {os.cpu_count()} CPUs (shared: read the ratios), {args.repeats} "
                      f"interleaved rounds; load average {load_start:.1f} at the start", flush=True)
                figures = refreshes(runs, args.repeats, args.only, client_cpu)
            finally:
                close()
    finally:
        if args.store is None:
            shutil.rmtree(directory, ignore_errors=True)
    load_end = os.getloadavg()[0]
    print(f"p50 of a refresh, ms: engine / interface (ratio; client {CLIENTS[client]}); all-tenant token, then "
          f"token of {TENANT}")
    print(f"{'dashboard':34} {'range':5} {'panels':>6} {'all tenants':>26} {'one tenant':>26} {'CPU':>6}"
          "  slowest panel (engine, all)")
    for (title, label), f in figures.items():
        cells = []
        for scope in ("*", TENANT):
            engine, http = f["p50_ms"][(scope, "engine")], f["p50_ms"][(scope, "interface")]
            cells.append(f"{engine:8.0f} / {http:7.0f} ({http / engine:4.2f})")
        print(f"{title:34} {label:5} {f['panels']:6} {cells[0]:>26} {cells[1]:>26} {f['cpu_p50_ms']:6.0f}"
              f"  {f['slowest']} ({f['slowest_ms']:.0f} ms)")
    if any(way[1] == "before" for f in figures.values() for way in f["p50_ms"]):
        print("the engine on audit_events before migration 0036 ((tenant_id, event_key)) and now, same rounds:"
              " p50 ms (CPU ms)")
        print(f"{'dashboard':34} {'range':5} {'all tenants: before':>20} {'now':>14} {'one tenant: before':>20}"
              f" {'now':>14}")
        for (title, label), f in figures.items():
            cells = [f"{f['p50_ms'][(scope, way)]:7.0f} ({f['cpu_ms'][(scope, way)]:5.0f})"
                     for scope in ("*", TENANT) for way in ("before", "engine")]
            print(f"{title:34} {label:5} {cells[0]:>20} {cells[1]:>14} {cells[2]:>20} {cells[3]:>14}")
    print(f"load average {load_end:.1f} at the end")
    overview = next((f for (title, label), f in figures.items() if label == "24h" and "overview" in title.lower()),
                    None)
    if overview is not None:
        p50 = overview["p50_ms"][("*", "engine")]
        verdict = "PASS" if p50 < OVERVIEW_TARGET_MS else "FAIL"
        print(f"{verdict}: overview 24 h refresh on the engine {p50:.0f} ms (CPU {overview['cpu_p50_ms']:.0f} ms), "
              f"target < {OVERVIEW_TARGET_MS} ms, load average {load_start:.1f}-{load_end:.1f}")
    ratios = {(title, label, scope): f["p50_ms"][(scope, "interface")] / f["p50_ms"][(scope, "engine")]
              for (title, label), f in figures.items() for scope in ("*", TENANT)}
    added = statistics.median((f["p50_ms"][(scope, "interface")] - f["p50_ms"][(scope, "engine")]) / f["panels"]
                              for f in figures.values() for scope in ("*", TENANT))
    worst = max(ratios, key=ratios.get)
    verdict = "PASS" if ratios[worst] <= INTERFACE_TARGET else "FAIL"
    print(f"{verdict}: the interface adds at most {(ratios[worst] - 1) * 100:+.0f} % over the engine (worst: "
          f"{worst[0]}, {worst[1]}, token {worst[2]}), target at most +{(INTERFACE_TARGET - 1) * 100:.0f} %, "
          f"load average {load_start:.1f}-{load_end:.1f}; median {added:+.1f} ms a query")
    # CPU time of this process (engine, HTTP server and client alike): what the interface costs on top, with
    # less of the load's noise than wall time.
    cpu_ratios = {(title, label, scope): f["cpu_ms"][(scope, "interface")] / f["cpu_ms"][(scope, "engine")]
                  for (title, label), f in figures.items() for scope in ("*", TENANT)}
    worst = max(cpu_ratios, key=cpu_ratios.get)
    added = statistics.median((f["cpu_ms"][(scope, "interface")] - f["cpu_ms"][(scope, "engine")]) / f["panels"]
                              for f in figures.values() for scope in ("*", TENANT))
    in_client = statistics.median(f["client_ms"][(scope, "interface")] / f["panels"]
                                  for f in figures.values() for scope in ("*", TENANT))
    print(f"CPU: the interface (server and client) adds {(statistics.median(cpu_ratios.values()) - 1) * 100:+.0f} % "
          f"(median), at most {(cpu_ratios[worst] - 1) * 100:+.0f} % ({worst[0]}, {worst[1]}, token {worst[2]}); "
          f"median {added:+.1f} ms of CPU a query, of which the client ({CLIENTS[client]}) {in_client:.2f} ms")


if __name__ == "__main__":
    main()
