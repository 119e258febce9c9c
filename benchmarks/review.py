"""The monthly review's cost beside a plain export of the same month, from one run (issue 18's Performance).

One tenant (`big`) gets --events hash-chained events spread over a month (and a quarter as many over the
month before, the review's comparison and a second size for the memory check), written by the engine from
an NDJSON file. Then, each as the operator runs it (a subprocess on the embedded store):

* `auditrail export --tenant big --since/--until <the month> --format csv` and `--format json`;
* `auditrail review generate --month <the month> --tenant big` (HTML, PDF, JSON: aggregates in the engine,
  plus the month's chain verification, which streams every event once, as `verify --tenant` does);
* the same review of the smaller month before: peak RSS of the two reviews shows whether memory follows
  the event count;
* each with `--integrity quick` (the chains' shape counted in the engine) and `full` (the default: every
  event hashed and linked, signatures checked: verify_stored, natively when the core is built, holding runs of
  verified links rather than events, so the two months' peak RSS should match).

Event ids are UUIDv7 of the event's time, as emitters make them (the export's and verify's order is the id's).

Wall time and the child's peak RSS (psutil, sampled every 50 ms). Target: review <= 3x the export's time,
memory flat. 2 CPU cores shared with other work here: read the ratios, and the load printed with them.

    .venv/bin/python benchmarks/review.py [--events 1000000] [--chains 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from auditrail import semconv
from auditrail.chain import GENESIS_HASH, event_hash, record_fields
from auditrail.events import new_event_id

AUDITRAIL = str(Path(sys.executable).parent / "auditrail")
TYPES = ("crawl.run", "crawl.run", "crawl.run", "prompt.update", "policy.update", "billing.plan.change")


def month_bounds(months_ago: int) -> tuple[datetime, datetime]:
    """[start, end) of the month `months_ago` before this one, UTC."""
    start = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months_ago):
        start = (start - timedelta(days=1)).replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def write_rows(path: Path, spans: list[tuple[datetime, datetime, int]], chains: int) -> None:
    """NDJSON rows of chained events: `count` evenly over each [start, end), round-robin over the chains."""
    state = [(str(uuid.uuid4()), GENESIS_HASH, 0) for _ in range(chains)]
    with open(path, "w") as out:
        for start, end, count in spans:
            step = int((end - start).total_seconds() * 1e9) // count
            first = int(start.timestamp() * 1e9)
            for n in range(count):
                c = n % chains
                chain_id, prev, seq = state[c]
                seq += 1
                kind = TYPES[n % len(TYPES)]
                ts = first + n * step
                attributes = {semconv.EVENT_ID: new_event_id(ts), semconv.TENANT: "big",
                              semconv.ACTOR: f"user{n % 40}@big.io", semconv.ACTOR_TYPE: "user",
                              semconv.OUTCOME: "failure" if n % 997 == 0 else "success",
                              semconv.RISK: "high" if n % 5000 == 0 else "low",
                              semconv.PAYLOAD: json.dumps({"run_id": n, "pages": 12, "domain": "big.io"}),
                              semconv.CHAIN_ID: chain_id, semconv.CHAIN_SEQ: seq, semconv.CHAIN_PREV: prev}
                record = {"event_name": kind, "time_unix_nano": ts, "attributes": attributes}
                prev = attributes[semconv.CHAIN_HASH] = event_hash(record_fields(record))
                state[c] = (chain_id, prev, seq)
                out.write(json.dumps({"ts": ts, "kind": kind, "attrs": {k: str(v) for k, v in attributes.items()}})
                          + "\n")


def fill(url: str, path: Path) -> None:
    """Load the rows through otel_logs (the materialized view fills audit_events), then merge."""
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    with Store.open(url) as store:
        migrate(store)
        store.command(
            "INSERT INTO auditrail.otel_logs (Timestamp, SeverityText, SeverityNumber, ServiceName, Body, ScopeName,"
            " LogAttributes, EventName) SELECT fromUnixTimestamp64Nano(ts), 'INFO', 9, 'app', 'event', 'auditrail',"
            " attrs, kind FROM file({path:String}, JSONEachRow, 'ts Int64, kind String, attrs Map(String, String)')",
            {"path": str(path)})
        store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of `auditrail ARGS`."""
    started = time.perf_counter()
    process = subprocess.Popen([AUDITRAIL, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    handle = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, handle.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"auditrail {' '.join(args)} failed: {err.decode()[-2000:]}")
    return time.perf_counter() - started, peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chains", type=int, default=20, help="emitters' chains the events are spread over")
    parser.add_argument("--modes", default="quick,full", help="the --integrity modes to time (quick,full)")
    parser.add_argument("--store", help="keep the filled store in this directory (reused when it exists: filled "
                                        "by an earlier run with the same --events and --chains)")
    args = parser.parse_args()
    month_start, month_end = month_bounds(1)
    prev_start, prev_end = month_bounds(2)
    month, previous = month_start.strftime("%Y-%m"), prev_start.strftime("%Y-%m")
    with tempfile.TemporaryDirectory(prefix="auditrail-review-bench-") as tmp:
        store = Path(args.store).absolute() if args.store else Path(tmp) / "store"
        url = f"chdb://{store}"
        env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url)
        if store.exists():
            print(f"store {store}: reused")
        else:
            rows = Path(tmp) / "rows.ndjson"
            began = time.perf_counter()
            write_rows(rows, [(prev_start, prev_end, args.events // 4), (month_start, month_end, args.events)],
                       args.chains)
            fill(url, rows)
            rows.unlink()
            print(f"filled {args.events} events in {month} and {args.events // 4} in {previous} "
                  f"({args.chains} chains) in {time.perf_counter() - began:.0f} s; load {os.getloadavg()[0]:.1f}")
        window = ["--tenant", "big", "--since", month_start.isoformat(), "--until", month_end.isoformat(),
                  "--no-progress"]
        csv_s, csv_mb = timed(["export", *window, "--format", "csv", "--out", f"{tmp}/month.csv"], env)
        json_s, json_mb = timed(["export", *window, "--format", "json", "--out", f"{tmp}/month.json"], env)
        runs = {}
        modes = args.modes.split(",")
        for mode in modes:
            for label, which in ((month, args.events), (previous, args.events // 4)):
                runs[mode, which] = timed(["review", "generate", "--month", label, "--tenant", "big", "--integrity",
                                           mode, "--out", f"{tmp}/reviews-{mode}", "--config", os.devnull], env)
        print(f"load {os.getloadavg()[0]:.1f} (2 shared cores)")
        print(f"export csv          {args.events:>9} events  {csv_s:6.1f} s  peak RSS {csv_mb:5.0f} MB")
        print(f"export json         {args.events:>9} events  {json_s:6.1f} s  peak RSS {json_mb:5.0f} MB")
        for mode in modes:
            big_s, big_mb = runs[mode, args.events]
            small_s, small_mb = runs[mode, args.events // 4]
            print(f"review --integrity {mode:<5} {args.events:>9} events  {big_s:6.1f} s  peak RSS {big_mb:5.0f} MB  "
                  f"= {big_s / csv_s:.2f}x the csv export, {big_s / json_s:.2f}x the json export")
            print(f"review --integrity {mode:<5} {args.events // 4:>9} events  {small_s:6.1f} s  peak RSS "
                  f"{small_mb:5.0f} MB  (RSS at 4x the events: {big_mb / small_mb:.2f}x)")

if __name__ == "__main__":
    main()
