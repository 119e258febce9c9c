"""A 1,000,000-event export streams through the real service in flat memory (RSS of the service measured)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

psutil = pytest.importorskip("psutil")

from test_store_service import cli, start_service, stop, token_of  # noqa: E402

EVENTS = 1_000_000
PYTHON = sys.executable

# One million audit records into otel_logs (the materialized view fills audit_events), made by the engine.
_FILL = f"""
import time
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
now = time.time_ns() - 3_600 * 10**9
with Store.open() as store:
    migrate(store)
    store.command('''
      INSERT INTO auditrail.otel_logs (Timestamp, SeverityText, SeverityNumber, ServiceName, Body, ScopeName,
                                       LogAttributes, EventName)
      SELECT fromUnixTimestamp64Nano(toInt64({{now:Int64}} + number * 1000)), 'INFO', 9, 'bench', 'event',
             'auditrail',
             map('audit.event_id', toString(generateUUIDv7()), 'audit.tenant_id', if(number % 10 = 0, 'other', 'big'),
                 'enduser.id', concat('user', toString(number % 100), '@acme.io'), 'audit.actor.type', 'user',
                 'client.address', '203.0.113.9', 'audit.risk', 'low', 'audit.outcome', 'success',
                 'audit.payload', concat('{{"domain":"acme.io","run_id":"', toString(number), '","pages":12}}')),
             'crawl.run'
      FROM numbers({EVENTS})''', {{"now": now}})
    # Merge now: the measurement is of the export, not of background merges running beside it.
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    store.command("OPTIMIZE TABLE auditrail.otel_logs FINAL")
"""


def test_a_million_event_csv_export_streams_in_flat_memory(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store")
    subprocess.run([PYTHON, "-c", _FILL], env=env, check=True, capture_output=True, timeout=600)
    process, base, env = start_service(tmp_path)
    try:
        token = token_of(cli("tokens", "create", "--tenant", "big", "--scope", "read", env=env))
        headers = {"Authorization": f"Bearer {token}"}
        service = psutil.Process(process.pid)
        for _ in range(2):  # warm up: caches, allocator arenas, a first export's buffers
            with httpx.stream("GET", base + "/v1/tenants/big/events", params={"format": "csv", "until": "2000-01-01"},
                              headers=headers) as response:
                response.read()
        baseline = service.memory_info().rss
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], service.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        lines = size = 0
        quarter = None  # the service's peak RSS when a quarter of the export has passed
        started = time.perf_counter()
        with httpx.stream("GET", base + "/v1/tenants/big/events", params={"format": "csv"}, headers=headers,
                          timeout=600) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
                size += len(chunk)
                if quarter is None and lines >= EVENTS * 9 // 40:
                    quarter = peak[0]
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    finally:
        stop(process)
    assert lines == EVENTS * 9 // 10 + 1  # the header and tenant "big"'s 900,000 events
    growth = peak[0] - baseline
    late = peak[0] - quarter
    print(f"\n{lines - 1} rows, {size / 1e6:.0f} MB CSV in {elapsed:.1f} s ({(lines - 1) / elapsed:,.0f} rows/s); "
          f"service RSS {baseline / 1e6:.0f} MB -> {quarter / 1e6:.0f} MB after a quarter -> peak "
          f"{peak[0] / 1e6:.0f} MB (+{growth / 1e6:.0f} MB)")
    # Flat: the export is one streamed query (~+190 MB, the engine's blocks and buffers), so memory stops
    # growing early; the last three quarters of the export (180 MB of CSV) add next to nothing.
    assert late < 64e6, f"RSS still grew {late / 1e6:.0f} MB over the last three quarters of the export"
    assert growth < 400e6, f"RSS grew {growth / 1e6:.0f} MB for a {size / 1e6:.0f} MB export"
