"""Events/s carried by the collector into the store, beside the same load sent straight to the store.

One run, on this machine, of the embedded deployment: `auditrail serve` (the store over chDB) and the built
collector (bin/otelcol-auditrail with collector-config/otelcol-embedded.yaml) in front of it.

1. direct:    N audit events, pre-encoded OTLP/HTTP protobuf batches, POSTed by C client threads straight to
              the store; the store acknowledges each batch after its insert, so N / wall time is its ingest rate.
2. collector: the same load to the collector; timed until the collector's exporter has sent every event to the
              store (its own `otelcol_exporter_sent_log_records` metric); the collector's CPU seconds per
              100,000 events from /proc.
3. burst:     twice the store's measured rate offered to the collector for a few seconds; 503/429 answers are
              retried by the client as auditrail's exporter does; then the store is checked: every event
              acknowledged is stored exactly once.

    python benchmarks/collector.py [--events 50000] [--batch 500] [--clients 4] [--burst-seconds 10]

Needs bin/otelcol-auditrail (`make collector`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from collector import (BINARY, EMBEDDED_CONFIGS, AuditEvent, Collector, audit_request,  # noqa: E402
                       collector_env)
from processes import free_port, terminate, wait_for_http  # noqa: E402

AUDITRAIL = Path(sys.executable).with_name("auditrail")
SENT_METRIC = "otelcol_exporter_sent_log_records{otlp_http/store}"


def cli(*args: str) -> str:
    done = subprocess.run([str(AUDITRAIL), *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return done.stdout


def encode_batches(tenant: str, events: int, batch: int) -> list[tuple[list[str], bytes]]:
    """(event ids, serialized ExportLogsServiceRequest) per batch, built before any clock starts."""
    out = []
    for start in range(0, events, batch):
        evs = [AuditEvent(f"custom.bench{i % 7}", "low", tenant) for i in range(start, min(start + batch, events))]
        out.append(([e.event_id for e in evs], audit_request(evs).SerializeToString()))
    return out


def post(url: str, token: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


class Load:
    """C client threads sending the batches, each retried until acknowledged (as auditrail's exporter does)."""

    def __init__(self, url: str, token: str, batches: list[tuple[list[str], bytes]], clients: int,
                 pace: Callable[[int], None] | None = None) -> None:
        self.url, self.token, self.batches, self.clients, self.pace = url, token, batches, clients, pace
        self.refused = 0
        self._next = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.batches):
                return None
            self._next += 1
            return self._next - 1

    def _worker(self) -> None:
        while (i := self._take()) is not None:
            if self.pace:
                self.pace(i)
            while (status := post(self.url, self.token, self.batches[i][1])) != 200:
                with self._lock:
                    self.refused += 1
                time.sleep(0.2 if status in (429, 503, 0) else 1.0)

    def run(self) -> float:
        """Send everything; the wall seconds until the last acknowledgement."""
        threads = [threading.Thread(target=self._worker) for _ in range(self.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0


def wait_sent(collector: Collector, target: float, timeout: float = 600) -> float:
    """Block until the collector reports target events sent to the store; the time it was reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if collector.metrics().get(SENT_METRIC, 0.0) >= target:
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"collector sent {collector.metrics().get(SENT_METRIC)} of {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not BINARY.exists():
        print("bin/otelcol-auditrail is missing: run `make collector`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="auditrail-bench-") as tmp:
        root = Path(tmp)
        store_url = f"chdb://{root / 'store'}"
        cli("migrate", "--url", store_url)
        port = free_port()
        log = open(root / "serve.log", "wb")
        serve = subprocess.Popen([str(AUDITRAIL), "serve", "--url", store_url, "--port", str(port)],
                                 stdout=log, stderr=subprocess.STDOUT)
        service = f"http://127.0.0.1:{port}"
        collector = None
        try:
            wait_for_http(f"{service}/healthz", serve, "auditrail serve")
            token = cli("tokens", "create", "--tenant", "*", "--scope", "admin", "--url", store_url).splitlines()[-1]
            figures: dict[str, float] = {"events": args.events, "batch": args.batch, "clients": args.clients}

            # 1. straight to the store
            direct = encode_batches("bench-direct", args.events, args.batch)
            warm = encode_batches("bench-warmup", 2 * args.batch, args.batch)
            Load(f"{service}/v1/logs", token, warm, 1).run()
            seconds = Load(f"{service}/v1/logs", token, direct, args.clients).run()
            figures["direct_events_per_s"] = args.events / seconds
            print(f"direct to the store:      {args.events / seconds:9.0f} events/s  ({seconds:.2f} s)")

            # 2. through the collector
            collector = Collector(root / "collector", collector_env(
                AUDITRAIL_STORE_ENDPOINT=service, AUDITRAIL_STORE_TOKEN=token), configs=list(EMBEDDED_CONFIGS))
            collector.start()
            intake = f"{collector.otlp_http}/v1/logs"
            from collector import TOKEN as collector_token
            Load(intake, collector_token, encode_batches("bench-warmup2", 2 * args.batch, args.batch), 1).run()
            wait_sent(collector, 2 * args.batch)
            via = encode_batches("bench-collector", args.events, args.batch)
            base = collector.metrics().get(SENT_METRIC, 0.0)
            cpu0 = collector.cpu_seconds()
            t0 = time.perf_counter()
            accepted = Load(intake, collector_token, via, args.clients).run()
            done = wait_sent(collector, base + args.events) - t0
            cpu = collector.cpu_seconds() - cpu0
            figures.update(collector_accept_events_per_s=args.events / accepted,
                           collector_delivered_events_per_s=args.events / done,
                           collector_cpu_s_per_100k=cpu * 100_000 / args.events)
            print(f"through the collector:    {args.events / done:9.0f} events/s delivered into the store "
                  f"({done:.2f} s; accepted at {args.events / accepted:.0f}/s)")
            print(f"collector CPU:            {cpu * 100_000 / args.events:9.2f} s per 100,000 events")

            # 3. a burst at twice the store's rate
            rate = 2 * figures["direct_events_per_s"]
            burst_events = int(rate * args.burst_seconds) // args.batch * args.batch
            burst = encode_batches("bench-burst", burst_events, args.batch)
            start = time.perf_counter()

            def pace(i: int) -> None:
                delay = start + i * args.batch / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

            base = collector.metrics().get(SENT_METRIC, 0.0)
            load = Load(intake, collector_token, burst, max(args.clients, 8), pace)
            offered = load.run()
            drained = wait_sent(collector, base + burst_events) - start
            figures.update(burst_events=burst_events, burst_offered_events_per_s=burst_events / offered,
                           burst_refused_requests=load.refused, burst_drained_s=drained)
            print(f"2x burst:                 {burst_events} events offered at {burst_events / offered:.0f}/s "
                  f"({load.refused} requests refused and retried), all delivered after {drained:.2f} s")
        finally:
            if collector is not None:
                collector.stop()
            terminate(serve, 30)
            log.close()

        # Nothing lost, nothing twice: count in the store itself (the service is stopped, so the engine is free).
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=store_url)
        rows = client.query(
            "SELECT tenant_id, count() AS n, uniqExact(event_id) AS ids FROM auditrail.audit_events_unique "
            "WHERE tenant_id IN ('bench-direct', 'bench-collector', 'bench-burst') GROUP BY tenant_id").result_rows
        counts = {tenant: (n, ids) for tenant, n, ids in rows}
        expected = {"bench-direct": args.events, "bench-collector": args.events, "bench-burst": burst_events}
        ok = all(counts.get(t) == (n, n) for t, n in expected.items())
        for t, n in expected.items():
            print(f"stored {t:16s} {counts.get(t, (0, 0))[0]:7d} rows, {counts.get(t, (0, 0))[1]:7d} ids "
                  f"(sent {n})")
        figures["exactly_once"] = ok
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(figures, indent=2))
        print("nothing lost, nothing twice" if ok else "MISMATCH: see counts above")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
