"""Which storage for the durable spool? The segment-file DiskSpool against SQLite WAL, measured in one run.

    .venv/bin/python benchmarks/spool.py                      # defaults: ~1 minute
    .venv/bin/python benchmarks/spool.py --n 20000 --seconds 3 --json out.json

For each candidate and mode:
  file    durable      DiskSpool: one copy into the mapped segment per append, fdatasync by a flusher every 50 ms
  file    fail_closed  DiskSpool: append returns after fdatasync, concurrent appenders share it (group commit)
  sqlite  NORMAL       stdlib sqlite3, journal_mode=WAL, synchronous=NORMAL (no fsync per commit: durable-like)
  sqlite  FULL         the same with synchronous=FULL (WAL fsynced at every commit: fail_closed-like)
SQLite stores one row per event (INSERT in autocommit, the same record payload as the file), the drain reads
`ORDER BY id LIMIT n` on a second connection and DELETEs on ack.

Measured, with a drain thread peeking/acking batches of 512 running throughout (as the pipeline's worker):
  latency   per-append p50/p99 (us) over N appends, with 1 and with 4 appending threads (all calls pooled);
  sustained appends/s over --seconds with 1 and 4 threads as fast as they go, and events/s drained.
The table prints sqlite/file ratios (>1: the file is better) and the issue's targets.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from auditrail.events import AuditEvent
from auditrail.spool_file import DiskSpool, decode_event, encode_event

PAYLOAD = json.dumps({"before": {"prompt_hash": "a" * 64}, "after": {"prompt_hash": "b" * 64},
                      "text": "x" * 200})


def make_event(i: int) -> AuditEvent:
    return AuditEvent("prompt.update", tenant="acme", actor=f"user{i % 100}", payload=PAYLOAD,
                      reason="ticket 1234", risk="high", trace_id=0x1234567890ABCDEF1234567890ABCDEF,
                      span_id=0x1234567890ABCDEF, trace_flags=1)


class SqliteSpool:
    """The SQLite WAL candidate with the Spool protocol (append / peek / ack / len / close)."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._w = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._w.execute("PRAGMA journal_mode=WAL")
        self._w.execute(f"PRAGMA synchronous={synchronous}")
        self._w.execute("PRAGMA busy_timeout=10000")
        self._w.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        self._r = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._r.execute(f"PRAGMA synchronous={synchronous}")
        self._r.execute("PRAGMA busy_timeout=10000")
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._ids: list[int] = []
        self._count = 0

    def append(self, event: AuditEvent) -> int:
        data = encode_event(event)
        with self._wlock:
            self._w.execute("INSERT INTO spool (data) VALUES (?)", (data,))
            self._count += 1
            return self._count

    def peek(self, max_items: int) -> list[AuditEvent]:
        with self._rlock:
            rows = self._r.execute("SELECT id, data FROM spool ORDER BY id LIMIT ?", (max_items,)).fetchall()
            self._ids = [r[0] for r in rows]
            return [decode_event(r[1]) for r in rows]

    def ack(self, count: int) -> None:
        with self._rlock:
            if count and self._ids:
                last = self._ids[min(count, len(self._ids)) - 1]
                self._r.execute("DELETE FROM spool WHERE id <= ?", (last,))
                with self._wlock:
                    self._count -= min(count, len(self._ids))
                self._ids = []

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Drainer:
    """The pipeline's worker, minus the exporter: peek 512, ack them, as fast as events come."""

    def __init__(self, spool: Any) -> None:
        self.spool = spool
        self.drained = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.spool.peek(512)
            if batch:
                self.spool.ack(len(batch))
                self.drained += len(batch)
            else:
                self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_threads(threads: int, work: Callable[[int], None]) -> float:
    start = threading.Barrier(threads + 1)

    def body(t: int) -> None:
        start.wait()
        work(t)

    pool = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    return time.perf_counter() - t0


def latency(spool: Any, threads: int, n: int) -> tuple[float, float]:
    """p50/p99 (us) of n appends split over `threads` threads, drain running."""
    events = [make_event(i) for i in range(n)]
    per = n // threads
    samples: list[list[int]] = [[] for _ in range(threads)]

    def work(t: int) -> None:
        out = samples[t]
        append = spool.append
        clock = time.perf_counter_ns
        for ev in events[t * per:(t + 1) * per]:
            t0 = clock()
            append(ev)
            out.append(clock() - t0)

    drainer = Drainer(spool)
    gc.collect()
    gc.disable()
    try:
        run_threads(threads, work)
    finally:
        gc.enable()
        drainer.stop()
    flat = sorted(x for s in samples for x in s)
    return flat[len(flat) // 2] / 1000, flat[int(len(flat) * 0.99)] / 1000


def sustained(spool: Any, threads: int, seconds: float) -> tuple[float, float, int]:
    """(appends/s, drained/s, backlog at the end) with `threads` appending flat out for `seconds`."""
    event = make_event(0)
    counts = [0] * threads
    stop_at = time.perf_counter() + seconds

    def work(t: int) -> None:
        append = spool.append
        now = time.perf_counter
        n = 0
        while True:
            for _ in range(64):
                append(event)
            n += 64
            if now() >= stop_at:
                break
        counts[t] = n

    drainer = Drainer(spool)
    elapsed = run_threads(threads, work)
    drainer.stop()
    return sum(counts) / elapsed, drainer.drained / elapsed, len(spool)


CANDIDATES: list[tuple[str, str, str]] = [
    # (row label, store, mode)
    ("file durable", "file", "durable"),
    ("sqlite WAL NORMAL", "sqlite", "NORMAL"),
    ("file fail_closed", "file", "fail_closed"),
    ("sqlite WAL FULL", "sqlite", "FULL"),
]


def open_store(store: str, mode: str, where: str) -> Any:
    if store == "file":
        return DiskSpool.open(os.path.join(where, "spool"), mode=mode)
    return SqliteSpool(os.path.join(where, "spool.db"), mode)


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for label, store, mode in CANDIDATES:
        slow = mode in ("fail_closed", "FULL")
        n = args.n_sync if slow else args.n
        row: dict[str, float] = {}
        for threads in (1, 4):
            with tempfile.TemporaryDirectory(dir=args.dir) as where:
                spool = open_store(store, mode, where)
                latency(spool, threads, min(n, 2000))  # warm-up
                p50, p99 = latency(spool, threads, n)
                row[f"p50_{threads}t"], row[f"p99_{threads}t"] = p50, p99
                rate, drained, backlog = sustained(spool, threads, args.seconds)
                row[f"rate_{threads}t"], row[f"drained_{threads}t"] = rate, drained
                row[f"backlog_{threads}t"] = backlog
                spool.close()
        results[label] = row
        print(f"  measured {label}", file=sys.stderr, flush=True)
    return results


def report(results: dict[str, dict[str, float]]) -> None:
    cols = [("p50_1t", "p50 1t us"), ("p99_1t", "p99 1t us"), ("p50_4t", "p50 4t us"), ("p99_4t", "p99 4t us"),
            ("rate_1t", "appends/s 1t"), ("rate_4t", "appends/s 4t"), ("drained_1t", "drained/s 1t"),
            ("drained_4t", "drained/s 4t")]
    head = f"{'':22}" + "".join(f"{c[1]:>15}" for c in cols)
    print(head)
    print("-" * len(head))
    for (fl, sl) in (("file durable", "sqlite WAL NORMAL"), ("file fail_closed", "sqlite WAL FULL")):
        for label in (fl, sl):
            r = results[label]
            print(f"{label:22}" + "".join(f"{r[k]:>15,.1f}" if k.startswith("p") else f"{r[k]:>15,.0f}"
                                          for k, _ in cols))
        f, s = results[fl], results[sl]
        ratios = []
        for k, _ in cols:
            # latency: sqlite/file; rates: file/sqlite -- either way >1 means the file spool is better
            ratio = s[k] / f[k] if k.startswith("p") else f[k] / max(s[k], 1e-9)
            ratios.append(f"{ratio:>14.2f}x")
        print(f"{'  file advantage':22}" + "".join(ratios))
        print()
    d, fc = results["file durable"], results["file fail_closed"]
    print("targets (issue 3):")
    print(f"  durable p50 (1 thread) {d['p50_1t']:.1f} us  <= ~25 us:  {'OK' if d['p50_1t'] <= 25 else 'MISSED'}")
    best = min(d["rate_1t"], d["drained_1t"])
    print(f"  durable sustained 1 thread {best:,.0f} events/s appended and drained >= 30,000: "
          f"{'OK' if best >= 30_000 else 'MISSED'}")
    worst = max(fc["p50_1t"], fc["p50_4t"])
    print(f"  fail_closed p50 {fc['p50_1t']:.0f} us (1t) / {fc['p50_4t']:.0f} us (4t) <= 2000 us: "
          f"{'OK' if worst <= 2000 else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_000, help="timed appends per durable-like run")
    parser.add_argument("--n-sync", type=int, default=4_000, help="timed appends per fsync-per-commit run")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each sustained run")
    parser.add_argument("--dir", default=None, help="where to put the spools (default: the temp dir)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"spools under {args.dir or tempfile.gettempdir()}", file=sys.stderr)
    results = measure(args)
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
