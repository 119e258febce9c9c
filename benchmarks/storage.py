"""Store service performance beside its baselines, from one run (issue 4's Performance section).

1. Ingest: OTLP/HTTP protobuf batches through a real `auditrail serve` (decode + insert into otel_logs,
   the materialized view into audit_events included), beside the engine alone inserting the same rows,
   pre-encoded as Native blocks, into the same otel_logs with the same view, as many inserts at once as the
   service runs (issue 15's target: the service at least 0.8x that; the figure with one insert at a time
   beside it), and clickhouse-connect inserting the same decoded rows (client.insert, Native) into a
   plain table of otel_logs' columns with no view. The service runs
   twice on fresh stores: the engine-decoding path (ingest_fast.py, the default; concurrent requests
   coalesced into one insert) and, with AUDITRAIL_INGEST_FAST=0, the Python decoding path. --senders
   requests at a time, as a collector's exporter queue sends; besides events/s, the CPU time the service
   process (or, for the baseline, this one) spent per event, which a busy shared machine distorts less.
2. CSV export of a tenant's events through the service (HTTP, streamed) beside chDB's own raw_stream of
   the same export query in-process.
3. A tenant + 24 h query (the canonical read, every event of one tenant-day) over a large table: p50 of
   it through the service and in the engine.

    .venv/bin/python benchmarks/storage.py [--ingest 200000] [--batch 5000] [--senders 8] [--repeats 1]
                                           [--export 1000000] [--query-rows 10000000] [--only ingest|export|query]

The engine work runs where the service runs (chDB in-process): 2 shared cores here, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ATTRIBUTES = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(store_url: str, log: Path, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=store_url, **extra_env)
    process = subprocess.Popen([PYTHON, "-m", "auditrail.cli", "serve", "--port", str(port)], env=env,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("service did not start: " + log.read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def token(store_url: str, tenant: str, scope: str) -> str:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=store_url)
    out = subprocess.run([PYTHON, "-m", "auditrail.cli", "tokens", "create", "--tenant", tenant, "--scope", scope],
                         env=env, capture_output=True, text=True, check=True).stdout
    return out.rstrip("\n").splitlines()[-1]


def batches(total: int, size: int) -> list[bytes]:
    """OTLP protobuf requests of `size` audit records (15 attributes each, as the instrumentation sends)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from otlp_requests import logs_request, uuid7ish

    now = time.time_ns()
    payload = '{"before":{"prompt_hash":"%s"},"after":{"prompt_hash":"%s"}}' % ("c" * 64, "d" * 64)

    def record(n: int) -> dict[str, object]:
        return {"time_unix_nano": now + n, "observed_time_unix_nano": now + n, "severity_number": 9,
                "severity_text": "INFO", "event_name": "prompt.update", "body": "prompt.update by user@acme.io",
                "attributes": {"audit.event_id": uuid7ish(n), "audit.tenant_id": f"t{n % 10}",
                               "enduser.id": f"user{n % 100}@acme.io", "audit.actor.type": "user",
                               "client.address": "203.0.113.9", "audit.reason": "ticket 42", "audit.outcome": "success",
                               "audit.risk": "high", "audit.chain.id": "01900000-0000-7000-8000-00000000c0de",
                               "audit.chain.prev_hash": "a" * 64, "audit.chain.hash": "b" * 64,
                               "audit.payload": payload, "service.version": "1.2.3", "deployment": "prod",
                               "audit.chain.seq": n + 1}}

    return [logs_request((record(n) for n in range(first, min(first + size, total))), service="bench")
            .SerializeToString() for first in range(0, total, size)]


def bench_service_ingest(bodies: list[bytes], url: str, log: Path, fast: bool, senders: int,
                         content_type: str = "application/x-protobuf", **env: str) -> tuple[float, float, float]:
    """(events/s, service CPU us per event, service peak RSS in bytes) through `auditrail serve`: the
    engine-decoding path (ingest_fast.py, concurrent requests coalesced into one insert) or the Python one;
    `env`: more of the service's environment (benchmarks/ingest_json.py's baseline: its PYTHONPATH)."""
    import psutil

    ingest = token(url, "*", "ingest")
    process, base = start_service(url, log, AUDITRAIL_INGEST_FAST="1" if fast else "0", **env)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ingest}",
                                                  "Content-Type": content_type}, timeout=300,
                          limits=httpx.Limits(max_connections=senders)) as client:
            client.post("/v1/logs", content=bodies[0])  # warm-up (counted in the store, not in the time)
            service = psutil.Process(process.pid)
            cpu_before = sum(service.cpu_times()[:2])
            started = time.perf_counter()
            # Concurrent senders, as a collector's exporter queue sends (sending_queue.num_consumers, 10 by
            # default): the service coalesces what arrives together into one engine insert.
            with ThreadPoolExecutor(senders) as pool:
                codes = list(pool.map(lambda body: client.post("/v1/logs", content=body).status_code, bodies[1:]))
            elapsed = time.perf_counter() - started
            cpu = sum(service.cpu_times()[:2]) - cpu_before
            assert set(codes) == {200}, codes
            peak = _peak_rss(process.pid)
    finally:
        stop(process)
    events = sum(_records(body) for body in bodies[1:])
    return events / elapsed, 1e6 * cpu / events, peak


def _peak_rss(pid: int) -> float:
    """The process's peak resident set (Linux VmHWM), in bytes; 0 where /proc has none."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return float(line.split()[1]) * 1024


def _records(body: bytes) -> int:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    if body.startswith(b"{"):  # OTLP/JSON
        document = json.loads(body)
        return sum(len(sl.get("logRecords", ())) for rl in document.get("resourceLogs", ())
                   for sl in rl.get("scopeLogs", ()))
    request = ExportLogsServiceRequest.FromString(body)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def bench_ingest(total: int, tmp: Path, batch: int, senders: int, python: bool = True,
                 collector: bool = True, repeats: int = 1) -> dict[str, float]:
    """Every figure of the ingest section. The service's fast path and the engine alone run `repeats` times,
    alternated (service, engine, service, ...), and each is the median of its runs: on a shared machine the
    load moves between two single runs more than the ratio being measured (0.47-1.04 seen for one code)."""
    bodies = batches(total, batch)
    python_rate = python_cpu = python_peak = float("nan")
    if python:
        python_rate, python_cpu, python_peak = bench_service_ingest(bodies, f"chdb://{tmp}/ingest-python",
                                                                    tmp / "ingest-python.log", False, senders)
    # The engine alone runs in this process on its own chDB directory (one engine a process), emptied between
    # runs; then clickhouse-connect inserts the same decoded rows into a plain table.
    from auditrail_store.db import Store
    from auditrail_store.ingest import BASE_COLUMNS, FEATURE_COLUMNS, decode_protobuf
    from auditrail_store.migrate import migrate

    store = Store.open(f"chdb://{tmp}/baseline")
    migrate(store)
    fast_runs, engine_runs, serial_runs = [], [], []
    for run in range(repeats):
        fast_runs.append(bench_service_ingest(bodies, f"chdb://{tmp}/ingest-fast-{run}", tmp / f"ingest-fast-{run}.log",
                                              True, senders))
        engine_runs.append(bench_engine_native(bodies[1:], store, tmp))
        serial_runs.append(bench_engine_native(bodies[1:], store, tmp, inserters=1))
    fast_rate, fast_cpu, fast_peak = (statistics.median(run[i] for run in fast_runs) for i in range(3))
    engine_rate, engine_cpu = (statistics.median(run[i] for run in engine_runs) for i in range(2))
    serial_rate, serial_cpu = (statistics.median(run[i] for run in serial_runs) for i in range(2))
    pairs = [f"{f[0] / e[0]:.2f}" for f, e in zip(fast_runs, engine_runs, strict=True)]
    store.command("CREATE TABLE auditrail.plain_logs AS auditrail.otel_logs ENGINE = MergeTree "
                  "ORDER BY (ServiceName, Timestamp)")
    columns = BASE_COLUMNS + FEATURE_COLUMNS
    decoded = [decode_protobuf(body) for body in bodies[1:]]
    from datetime import datetime, timezone

    prepared = []
    for decoded_batch in decoded:
        data = decoded_batch.columns()
        rows = list(zip(*(data[c] for c in columns), strict=True))
        prepared.append([(datetime.fromtimestamp(r[0] / 1e9, timezone.utc),) + r[1:] for r in rows])
    events = sum(len(rows) for rows in prepared)
    cpu_before = sum(os.times()[:2])
    started = time.perf_counter()
    for rows in prepared:
        store.client.insert("plain_logs", rows, column_names=list(columns), database="auditrail")
    baseline_rate = events / (time.perf_counter() - started)
    baseline_cpu = 1e6 * (sum(os.times()[:2]) - cpu_before) / events
    store.close()
    exporter = bench_collector_exporter(bodies, tmp, senders) if collector else None
    return {"exporter": exporter["rate"] if exporter else float("nan"),
            "exporter_cpu": exporter["cpu"] if exporter else float("nan"), "service": fast_rate, "service_cpu": fast_cpu, "service_peak": fast_peak, "python": python_rate,
            "python_cpu": python_cpu, "python_peak": python_peak, "baseline": baseline_rate,
            "baseline_cpu": baseline_cpu, "engine": engine_rate, "engine_cpu": engine_cpu, "pairs": pairs,
            "serial": serial_rate, "serial_cpu": serial_cpu}


def bench_collector_exporter(bodies: list[bytes], tmp: Path, senders: int) -> dict[str, float] | None:
    """The collector's clickhouse exporter (bin/otelcol-auditrail: otlp receiver -> clickhouse exporter, its
    sending queue with `senders` consumers) into the same schema and view on the same engine, chDB, behind
    tests/clickhouse_http.py (the test fixture that speaks ClickHouse's HTTP interface: no ClickHouse server
    can be installed here). Timed from the first request until every row is in otel_logs. None without the
    binary (`make collector`)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from clickhouse_http import ClickHouseHTTPFixture
    from collector import BINARY, Collector, exporter_only_config

    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    if not BINARY.exists():
        return None
    with ClickHouseHTTPFixture(tmp / "exporter-clickhouse") as clickhouse:
        with Store.open(clickhouse.url) as store:
            migrate(store)
        config = tmp / "exporter.yaml"
        config.write_text(exporter_only_config("num_consumers: ${env:BENCH_CONSUMERS}", telemetry_off=True))
        collector = Collector(tmp / "exporter-collector", {"EXPORTER_CLICKHOUSE_ENDPOINT": clickhouse.url,
                                                           "BENCH_CONSUMERS": str(senders)}, [config])

        def stored() -> int:
            return int(clickhouse.execute("SELECT count() FROM auditrail.otel_logs"))

        def wait_for(count: int) -> None:
            deadline = time.monotonic() + 600
            while stored() < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the collector stored {stored()} of {count} rows: {collector.log_tail()}")
                time.sleep(0.1)

        with collector, httpx.Client(base_url=collector.otlp_http, timeout=300,
                                     headers={"Content-Type": "application/x-protobuf"},
                                     limits=httpx.Limits(max_connections=senders)) as client:
            assert client.post("/v1/logs", content=bodies[0]).status_code == 200  # warm-up
            wait_for(_records(bodies[0]))
            import psutil

            fixture = psutil.Process(clickhouse._proc.pid)
            cpu_before = collector.cpu_seconds() + sum(fixture.cpu_times()[:2])
            started = time.perf_counter()
            with ThreadPoolExecutor(senders) as pool:
                codes = list(pool.map(lambda body: client.post("/v1/logs", content=body).status_code, bodies[1:]))
            assert set(codes) == {200}, codes
            total = sum(_records(body) for body in bodies)
            wait_for(total)
            elapsed = time.perf_counter() - started
            cpu = collector.cpu_seconds() + sum(fixture.cpu_times()[:2]) - cpu_before
    events = total - _records(bodies[0])
    return {"rate": events / elapsed, "cpu": 1e6 * cpu / events}


def bench_engine_native(bodies: list[bytes], store: Any, tmp: Path, inserters: int | None = None) -> tuple[float, float]:
    """(events/s, CPU us per event) of the engine alone: the requests' rows pre-encoded (untimed) as the
    native core's Native blocks, grouped as the service groups them (ingest_fast.GROUP_ROWS / GROUP_BYTES),
    written to files beforehand, then inserted into `store`'s otel_logs (emptied first, as fresh as the
    service's store), its view into audit_events running, with the service's own statement
    (ingest_fast.native_insert_sql), by `inserters` concurrent inserters (default: as many as the service has
    engine handles, ingest_fast.HANDLES), each taking the next group when free. (One inserter, the groups one
    after the other, leaves a core to the merges alone: 134k-179k events/s against 201k-248k with two, five
    alternated rounds on a quiet machine.)"""
    import queue

    import auditrail_native
    import chdb

    from auditrail_store.db import engine_connection_string
    from auditrail_store.ingest_fast import GROUP_BYTES, GROUP_ROWS, HANDLES, native_insert_sql

    inserters = inserters or HANDLES
    for table in ("otel_logs", "audit_events", "source_ips"):
        store.command(f"TRUNCATE TABLE IF EXISTS auditrail.{table}")
    blocks = [auditrail_native.otlp_logs_native(body) for body in bodies]
    groups: list[list[bytes]] = [[]]
    rows = size = 0
    for count, block in blocks:
        if groups[-1] and (rows + count > GROUP_ROWS or size + len(block) > GROUP_BYTES):
            groups.append([])
            rows = size = 0
        groups[-1].append(block)
        rows, size = rows + count, size + len(block)
    spool = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp
    files = []
    for i, group in enumerate(groups):
        path = spool / f"auditrail-bench-{os.getpid()}-{i}.native"
        path.write_bytes(b"".join(group))
        files.append(path)
    connections: queue.SimpleQueue[object] = queue.SimpleQueue()
    for _ in range(inserters):
        connections.put(chdb.connect(engine_connection_string(str(tmp / "baseline"))))

    def insert(path: Path) -> None:
        connection = connections.get()
        try:
            connection.query(native_insert_sql("`auditrail`.`otel_logs`", auditrail_native.COLUMNS, str(path)))
        finally:
            connections.put(connection)

    try:
        with ThreadPoolExecutor(inserters) as pool:
            cpu_before = sum(os.times()[:2])
            started = time.perf_counter()
            list(pool.map(insert, files))
            elapsed = time.perf_counter() - started
            cpu = sum(os.times()[:2]) - cpu_before
    finally:
        for _ in range(inserters):
            connections.get().close()
        for path in files:
            path.unlink()
    events = sum(count for count, _ in blocks)
    return events / elapsed, 1e6 * cpu / events


_FILL = """
import sys, time
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
rows, days, tenants = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
start = time.time_ns() - days * 86_400 * 10**9
step = days * 86_400 * 10**9 // rows
with Store.open() as store:
    migrate(store)
    for offset in range(0, rows, 1_000_000):
        store.command('''
          INSERT INTO auditrail.otel_logs (Timestamp, SeverityText, SeverityNumber, ServiceName, Body, ScopeName,
                                           LogAttributes, EventName)
          SELECT fromUnixTimestamp64Nano(toInt64({start:Int64} + number * {step:Int64})), 'INFO', 9, 'bench',
                 'event', 'auditrail',
                 map('audit.event_id', toString(generateUUIDv7()),
                     'audit.tenant_id', concat('t', toString(number % {tenants:UInt32})),
                     'enduser.id', concat('user', toString(number % 100), '@acme.io'),
                     'client.address', '203.0.113.9', 'audit.risk', 'low', 'audit.outcome', 'success',
                     'audit.payload', concat('{"domain":"acme.io","run_id":"', toString(number), '","pages":12}')),
                 'crawl.run'
          FROM numbers({offset:UInt64}, {count:UInt64})''',
          {"start": start, "step": step, "tenants": tenants, "offset": offset,
           "count": min(1_000_000, rows - offset)})
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
"""

_RAW_STREAM = """
import sys, time
from auditrail_store.db import Store
from auditrail_store.export import ExportFilters, export_query
with Store.open() as store:
    sql, params = export_query(store, sys.argv[1], ExportFilters(), flat=True)
    started = time.perf_counter()
    stream = store.client.raw_stream(sql, parameters=params, fmt="CSV")  # (export_query carries its SETTINGS)
    lines = 0
    while chunk := stream.read(1 << 16):
        lines += chunk.count(b"\\n")
    print(lines, time.perf_counter() - started)
"""

_ENGINE_QUERY = """
import sys, time, statistics
from datetime import datetime, timedelta, timezone
from auditrail_store.db import Store, select_events
with Store.open() as store:
    end = datetime.now(timezone.utc) - timedelta(days=3)
    times = []
    for i in range(int(sys.argv[2])):
        day_end = end - timedelta(hours=7 * i)
        sql, params = select_events(store, sys.argv[1], since=day_end - timedelta(hours=24), until=day_end)
        started = time.perf_counter()
        rows = store.query(sql, params).result_rows
        times.append(time.perf_counter() - started)
    print(statistics.median(times), len(rows))
"""


def fill(url: str, rows: int, days: int, tenants: int) -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", _FILL, str(rows), str(days), str(tenants)], check=True,
                   env=dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url))
    return time.perf_counter() - started


def bench_export(total: int, tmp: Path) -> dict[str, float]:
    url = f"chdb://{tmp}/export"
    fill(url, total, 1, 1)
    read = token(url, "t0", "read")
    process, base = start_service(url, tmp / "export.log")
    try:
        started = time.perf_counter()
        lines = 0
        with httpx.stream("GET", base + "/v1/tenants/t0/events", params={"format": "csv"},
                          headers={"Authorization": f"Bearer {read}"}, timeout=None) as response:
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
        service_rate = (lines - 1) / (time.perf_counter() - started)
    finally:
        stop(process)
    out = subprocess.run([PYTHON, "-c", _RAW_STREAM, "t0"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url)).stdout.split()
    return {"service": service_rate, "baseline": int(out[0]) / float(out[1]), "rows": lines - 1}


def bench_query(total: int, tmp: Path, repeats: int = 21) -> dict[str, float]:
    url = f"chdb://{tmp}/query"
    fill_seconds = fill(url, total, 30, 100)
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url)
    engine = subprocess.run([PYTHON, "-c", _ENGINE_QUERY, "t7", str(repeats)], check=True, capture_output=True,
                            text=True, env=env).stdout.split()
    read = token(url, "t7", "read")
    process, base = start_service(url, tmp / "query.log")
    times = []
    try:
        from datetime import datetime, timedelta, timezone

        end = datetime.now(timezone.utc) - timedelta(days=3)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {read}"}, timeout=60) as client:
            for i in range(repeats):
                day_end = end - timedelta(hours=7 * i)
                params = {"since": (day_end - timedelta(hours=24)).isoformat(), "until": day_end.isoformat(),
                          "format": "ndjson"}
                started = time.perf_counter()
                response = client.get("/v1/tenants/t7/events", params=params)
                times.append(time.perf_counter() - started)
                rows = response.text.count("\n")
    finally:
        stop(process)
    return {"service_p50": statistics.median(times), "engine_p50": float(engine[0]), "rows": rows,
            "fill_seconds": fill_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ingest", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000, help="records per ingest request")
    parser.add_argument("--senders", type=int, default=8, help="concurrent ingest requests")
    parser.add_argument("--only", choices=("ingest", "export", "query"), help="run one section")
    parser.add_argument("--no-python", action="store_true", help="ingest: skip the Python decoding path's run")
    parser.add_argument("--no-collector", action="store_true",
                        help="ingest: skip the collector's clickhouse exporter (it needs bin/otelcol-auditrail)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="ingest: runs of the service and of the engine alone, alternated; medians reported")
    parser.add_argument("--export", type=int, default=1_000_000)
    parser.add_argument("--query-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    from auditrail_store.ingest_fast import HANDLES

    with tempfile.TemporaryDirectory(prefix="auditrail-bench-") as name:
        tmp = Path(name)
        if args.only in (None, "ingest"):
            ingest = bench_ingest(args.ingest, tmp, args.batch, args.senders, not args.no_python,
                                  not args.no_collector, args.repeats)
            print(f"ingest  {args.ingest:>10,} events  service (OTLP/HTTP protobuf, {args.batch:,}-record requests, "
                  f"{args.senders} senders, MV incl.) {ingest['service']:>9,.0f}/s, "
                  f"{ingest['service_cpu']:.1f} CPU us/event, peak RSS {ingest['service_peak'] / 1e6:.0f} MB "
                  f"(engine decodes; Python decoding path {ingest['python']:>7,.0f}/s, {ingest['python_cpu']:.0f} us, "
                  f"{ingest['python_peak'] / 1e6:.0f} MB) | clickhouse-connect insert, plain "
                  f"table {ingest['baseline']:>9,.0f}/s, {ingest['baseline_cpu']:.0f} us"
                  f" | ratio {ingest['service'] / ingest['baseline']:.2f}"
                  f" | engine alone, the same rows as Native blocks into otel_logs + view, {HANDLES} inserters "
                  f"{ingest['engine']:>9,.0f}/s, {ingest['engine_cpu']:.1f} us | service/engine "
                  f"{ingest['service'] / ingest['engine']:.2f} "
                  f"(target >= 0.8; each pair {', '.join(ingest['pairs'])}; in CPU "
                  f"{ingest['engine_cpu'] / ingest['service_cpu']:.2f}; against one inserter {ingest['serial']:>9,.0f}/s, "
                  f"{ingest['serial_cpu']:.1f} us: {ingest['service'] / ingest['serial']:.2f}) | the collector's clickhouse exporter into the same schema (chDB behind "
                  f"tests/clickhouse_http.py) {ingest['exporter']:>9,.0f}/s, {ingest['exporter_cpu']:.0f} us | "
                  f"service/exporter {ingest['service'] / ingest['exporter']:.2f} (target >= 1)"
                  f"  [load {os.getloadavg()[0]:.1f}]", flush=True)
        if args.only in (None, "export"):
            export = bench_export(args.export, tmp)
            print(f"export  {export['rows']:>10,} rows    service CSV over HTTP {export['service']:>9,.0f} rows/s"
                  f" | chDB raw_stream CSV {export['baseline']:>9,.0f} rows/s"
                  f" | ratio {export['service'] / export['baseline']:.2f}  (target >= 300,000/s)", flush=True)
        if args.only in (None, "query"):
            query = bench_query(args.query_rows, tmp)
            print(f"query   {args.query_rows:>10,} events  tenant + 24 h ({query['rows']} rows): service p50 "
                  f"{query['service_p50'] * 1000:.1f} ms | engine (canonical read) p50 "
                  f"{query['engine_p50'] * 1000:.1f} ms"
                  f"  (target < 100 ms; table filled in {query['fill_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
