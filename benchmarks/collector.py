"""Events/s carried by the collector into the store, beside the same load sent straight to the store.

One run, on this machine, of the embedded deployment: `auditrail serve` (the store over chDB) and the built
collector (bin/otelcol-auditrail with collector-config/otelcol-embedded.yaml) in front of it. For each
request size (events per OTLP request, 500 to 10,000 by default), in the same run:

1. direct:    N audit events, pre-encoded OTLP/HTTP protobuf requests, POSTed by C client threads straight to
              the store; the store acknowledges each request after its insert, so N / wall time is its rate.
              Run before and after the collector's turn; the figure is the mean of the two.
2. collector: the same load to the collector; timed until the collector's exporter has sent every event to the
              store (its own `otelcol_exporter_sent_log_records` metric); the collector's CPU seconds per
              100,000 events from /proc. The ratio collector/direct is the figure to compare across machines.
              The store's CPU seconds per 100,000 events are taken over each phase too (direct: the mean of
              both), so where the CPU goes on a shared machine is in the figures, not guessed: merges the
              engine runs after a phase are counted in the next one.
3. burst:     (once, at the first size) twice the store's measured rate offered to the collector for a few
              seconds; 503/429 answers are retried by the client as auditrail's exporter does.

Then the store is checked: every event acknowledged is stored exactly once.

    python benchmarks/collector.py [--events 50000] [--batches 500,2048,5000,10000] [--clients 4]
                                   [--burst-seconds 10] [--pprof DIR] [--json FILE]
                                   [--variant FILE ...] [--repeat N]

--variant FILE (repeatable) runs one more collector with FILE merged last (other sending_queue, file_storage or
pipeline settings) beside the shipped one: each size goes through every collector in turn, between the same two
direct measurements, so variants are compared within one run; --repeat N does N rounds and prints the medians.
benchmarks/collector-variants/ holds the variants measured for collector-config/README.md.
--pprof DIR saves a CPU profile of the collector over each collector phase (its pprof extension, through
collector-config/pprof.yaml): `go tool pprof -top DIR/shipped-2048.pprof`.

Needs bin/otelcol-auditrail (`make collector`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from processes import cpu_seconds, free_port, terminate, wait_for_http  # noqa: E402

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


def load_average() -> str:
    """The 1-minute load average and the cores: how busy the machine was while a figure was taken."""
    return f"{os.getloadavg()[0]:.1f}/{os.cpu_count()}"


class Profiler:
    """CPU profiles of the collector from its pprof extension, one per collector phase (a background GET)."""

    def __init__(self, directory: Path | None, port: int) -> None:
        self.directory, self.port = directory, port
        self._thread: threading.Thread | None = None

    def start(self, name: str, seconds: int) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{self.port}/debug/pprof/profile?seconds={seconds}"
        target = self.directory / f"{name}.pprof"

        def fetch() -> None:
            with urllib.request.urlopen(url, timeout=seconds + 30) as r:
                target.write_bytes(r.read())

        self._thread = threading.Thread(target=fetch)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000,
                        help="events per phase, at least 20 requests' worth (a sustained stream, not a blip)")
    parser.add_argument("--batches", default="500,2048,5000,10000", help="events per request, comma-separated")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--burst-seconds", type=float, default=10.0)
    parser.add_argument("--gogc", default="400", help="the collector's GOGC, as collector-config/README.md advises "
                        "(with GOMEMLIMIT=--gomemlimit); 'off' leaves the Go default (100)")
    parser.add_argument("--gomemlimit", default="1GiB")
    parser.add_argument("--pprof", type=Path, default=None, help="save the collector's CPU profiles here")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures here")
    parser.add_argument("--variant", dest="variants", type=Path, action="append", default=[],
                        help="a collector config file merged last: a variant measured beside the shipped config "
                             "in the same run (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over every size; the medians are reported")
    args = parser.parse_args(argv)
    sizes = [int(b) for b in args.batches.split(",")]
    if not BINARY.exists():
        print("bin/otelcol-auditrail is missing: run `make collector`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="auditrail-bench-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        store_url = f"chdb://{root / 'store'}"
        cli("migrate", "--url", store_url)
        port = free_port()
        log = open(root / "serve.log", "wb")
        serve = subprocess.Popen([str(AUDITRAIL), "serve", "--url", store_url, "--port", str(port)],
                                 stdout=log, stderr=subprocess.STDOUT)
        service = f"http://127.0.0.1:{port}"
        collectors: dict[str, tuple[Collector, Profiler]] = {}
        rows: list[dict[str, float | str]] = []
        expected: dict[str, int] = {}
        figures: dict[str, object] = {}
        from collector import TOKEN as collector_token
        try:
            wait_for_http(f"{service}/healthz", serve, "auditrail serve")
            token = cli("tokens", "create", "--tenant", "*", "--scope", "admin", "--url", store_url).splitlines()[-1]
            runtime = {} if args.gogc == "off" else {"GOGC": args.gogc, "GOMEMLIMIT": args.gomemlimit}
            # Every variant's collector runs for the whole run (an idle one costs next to nothing), so each size is
            # measured through each variant between the same two direct measurements.
            for variant in [None, *args.variants]:
                name = "shipped" if variant is None else variant.stem
                pprof_port = free_port()
                configs = list(EMBEDDED_CONFIGS) + ([REPO / "collector-config" / "pprof.yaml"] if args.pprof else [])
                configs += [variant.resolve()] if variant else []
                collector = Collector(root / f"collector-{name}", collector_env(
                    AUDITRAIL_STORE_ENDPOINT=service, AUDITRAIL_STORE_TOKEN=token,
                    AUDITRAIL_COLLECTOR_PPROF_ENDPOINT=f"127.0.0.1:{pprof_port}", **runtime), configs=configs)
                collector.start()
                collectors[name] = (collector, Profiler(args.pprof, pprof_port))
                Load(f"{collector.otlp_http}/v1/logs", collector_token,
                     encode_batches(f"bench-warmup-{name}", 2 * sizes[0], sizes[0]), 1).run()
                wait_sent(collector, 2 * sizes[0])
            Load(f"{service}/v1/logs", token, encode_batches("bench-warmup", 2 * sizes[0], sizes[0]), 1).run()
            print(f"{args.events}+ events per phase (20 requests at least), {args.clients} clients; collector with "
                  f"{' '.join(f'{k}={v}' for k, v in runtime.items()) or 'the Go GC defaults'}; "
                  f"variants: {', '.join(collectors)}; load average at start {load_average()}")
            print(f"{'variant':>12} | {'per request':>11} | {'direct ev/s':>11} | {'collector ev/s':>14} | "
                  f"{'ratio':>5} | {'accepted ev/s':>13} | {'CPU s/100k':>10} | store CPU s/100k direct / via | load")
            for rnd in range(args.repeat):
                for size in sizes:
                    events = max(args.events, 20 * size)

                    # 1. straight to the store, before and after the collectors' turns (the store slows as it fills
                    #    and the machine's load drifts: the mean of both sides is the fair baseline)
                    def direct_run(tenant: str, size: int = size, events: int = events) -> tuple[float, float]:
                        """(wall seconds, the store's CPU seconds) of one direct phase."""
                        expected[tenant] = events
                        batches = encode_batches(tenant, events, size)
                        store0 = cpu_seconds(serve.pid)
                        wall = Load(f"{service}/v1/logs", token, batches, args.clients).run()
                        return wall, cpu_seconds(serve.pid) - store0

                    before, store_before = direct_run(f"bench-direct-{rnd}-{size}")
                    # 2. through each collector
                    turns = []
                    order = list(collectors.items())
                    order = order[rnd % len(order):] + order[:rnd % len(order)]  # no variant always goes first
                    for name, (collector, profiler) in order:
                        tenant = f"bench-{name}-{rnd}-{size}"
                        via = encode_batches(tenant, events, size)
                        expected[tenant] = events
                        base = collector.metrics().get(SENT_METRIC, 0.0)
                        cpu0, store0 = collector.cpu_seconds(), cpu_seconds(serve.pid)
                        profiler.start(f"{name}-{size}", max(3, round(before * 2)))  # about the phase
                        t0 = time.perf_counter()
                        accepted = Load(f"{collector.otlp_http}/v1/logs", collector_token, via, args.clients).run()
                        done = wait_sent(collector, base + events) - t0
                        turns.append((name, done, accepted, collector.cpu_seconds() - cpu0,
                                      cpu_seconds(serve.pid) - store0))
                        profiler.wait()
                    after, store_after = direct_run(f"bench-direct2-{rnd}-{size}")
                    seconds, store_direct = (before + after) / 2, (store_before + store_after) / 2
                    for name, done, accepted, cpu, store_cpu in turns:
                        row = {"variant": name, "round": rnd, "batch": size, "events": events,
                               "direct_events_per_s": events / seconds, "collector_delivered_events_per_s": events / done,
                               "ratio": seconds / done, "collector_accept_events_per_s": events / accepted,
                               "collector_cpu_s_per_100k": cpu * 100_000 / events,
                               "store_cpu_s_per_100k_direct": store_direct * 100_000 / events,
                               "store_cpu_s_per_100k_via_collector": store_cpu * 100_000 / events,
                               "load": load_average()}
                        rows.append(row)
                        print(f"{name:>12} | {size:>11} | {row['direct_events_per_s']:>11.0f} | "
                              f"{row['collector_delivered_events_per_s']:>14.0f} | {row['ratio']:>5.2f} | "
                              f"{row['collector_accept_events_per_s']:>13.0f} | {row['collector_cpu_s_per_100k']:>10.2f}"
                              f" | {row['store_cpu_s_per_100k_direct']:>5.2f} / {row['store_cpu_s_per_100k_via_collector']:<5.2f}"
                              f" | {row['load']}")
            if args.repeat > 1:
                print("medians over the rounds:")
                for name in collectors:
                    for size in sizes:
                        mine = [r for r in rows if r["variant"] == name and r["batch"] == size]
                        print(f"{name:>12} | {size:>11} | ratio {statistics.median(r['ratio'] for r in mine):.2f} | "
                              f"CPU s/100k {statistics.median(r['collector_cpu_s_per_100k'] for r in mine):.2f} | "
                              "store CPU s/100k direct / via "
                              f"{statistics.median(r['store_cpu_s_per_100k_direct'] for r in mine):.2f} / "
                              f"{statistics.median(r['store_cpu_s_per_100k_via_collector'] for r in mine):.2f}")

            # 3. a burst at twice the store's rate (first size), through the shipped config
            figures = {"events": args.events, "clients": args.clients, "sizes": rows, "runtime": runtime,
                       "variants": [str(v) for v in args.variants]}
            if args.burst_seconds > 0:
                collector = collectors["shipped"][0]
                size = sizes[0]
                rate = 2 * rows[0]["direct_events_per_s"]
                burst_events = int(rate * args.burst_seconds) // size * size
                burst = encode_batches("bench-burst", burst_events, size)
                expected["bench-burst"] = burst_events
                start = time.perf_counter()

                def pace(i: int) -> None:
                    delay = start + i * size / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)

                base = collector.metrics().get(SENT_METRIC, 0.0)
                load = Load(f"{collector.otlp_http}/v1/logs", collector_token, burst, max(args.clients, 8), pace)
                offered = load.run()
                drained = wait_sent(collector, base + burst_events) - start
                figures.update(burst_events=burst_events, burst_offered_events_per_s=burst_events / offered,
                               burst_refused_requests=load.refused, burst_drained_s=drained)
                print(f"2x burst ({size}/request): {burst_events} events offered at {burst_events / offered:.0f}/s "
                      f"({load.refused} requests refused and retried), all delivered after {drained:.2f} s")
        finally:
            for collector, _ in collectors.values():
                collector.stop()
            terminate(serve, 30)
            log.close()

        # Nothing lost, nothing twice: count in the store itself (the service is stopped, so the engine is free).
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=store_url)
        found = dict(((t, (n, ids)) for t, n, ids in client.query(
            "SELECT tenant_id, count() AS n, uniqExact(event_id) AS ids FROM auditrail.audit_events_unique "
            "WHERE tenant_id LIKE 'bench-%' AND tenant_id NOT LIKE 'bench-warmup%' GROUP BY tenant_id").result_rows))
        bad = {t: found.get(t, (0, 0)) for t, n in expected.items() if found.get(t) != (n, n)}
        figures["exactly_once"] = not bad
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(figures, indent=2))
        print("stored: every event once" if not bad else f"MISMATCH (rows, ids) against {expected}: {bad}")
        return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
