"""A live store's 24 h panels read the recent days, not the whole table (migration 0036).

Before 0036, audit_events was ordered by (tenant_id, event_key): a part not merged yet holds rows of every
tenant, its granule spans every tenant's keys, and FINAL read and merged every granule between them, so a
24 h panel on a store under ingest read the whole table. Here: 30 days of history of three tenants (ids
UUIDv7 of their time) merged into one part, then three recent inserts left unmerged; every overview panel's
24 h query must select the granules of the last day or two only.
"""

from __future__ import annotations

import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grafana.queries import ALL, EVENTS, OVERVIEW, expand  # noqa: E402
from test_grafana_conflicts import COLUMNS, TENANTS, row, uuid7  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
HISTORY = 300_000  # 30 days (10,000 events a day), 37 granules of 8192 rows


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    rng = random.Random(36)
    with Store.open(f"chdb://{tmp_path_factory.mktemp('live')}/store") as opened:
        migrate(opened)
        step = timedelta(days=30) / HISTORY
        history = [row(uuid7(NOW - timedelta(days=30) + n * step, rng), NOW - timedelta(days=30) + n * step,
                       TENANTS[n % 3], risk="high" if n % 50 == 0 else "low") + [NOW] for n in range(HISTORY)]
        opened.insert("audit_events", history, COLUMNS)
        opened.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
        opened.command("SYSTEM STOP MERGES auditrail.audit_events")
        for part in range(3):  # the ingest of the last minutes, not merged yet
            at = [NOW - timedelta(minutes=10 - part * 3 - k / 100) for k in range(300)]
            opened.insert("audit_events", [row(uuid7(t, rng), t, TENANTS[k % 3]) + [NOW] for k, t in enumerate(at)],
                          COLUMNS)
        yield opened


def granules(store, sql: str) -> list[tuple[int, int]]:
    """(granules selected, granules in the table) of each read of audit_events in the query's plan."""
    plan = "\n".join(r[0] for r in store.query(f"EXPLAIN indexes = 1 {sql}").result_rows)
    total = store.query("SELECT sum(marks) FROM system.parts WHERE active AND database = 'auditrail'"
                        " AND table = 'audit_events'").result_rows[0][0]
    reads = [re.search(r"Parts: \d+ \| Granules: (\d+)", read).group(1)
             for read in plan.split("ReadFromMergeTree (auditrail.audit_events)")[1:]]
    return [(int(n), total) for n in reads]


def test_a_24_hour_panel_on_a_live_store_reads_the_last_days_only(store):
    parts = store.query("SELECT count() FROM system.parts WHERE active AND database = 'auditrail'"
                        " AND table = 'audit_events'").result_rows[0][0]
    assert parts == 4  # the merged history and the three recent inserts
    checked = 0
    for panel in OVERVIEW.panels:
        if EVENTS not in panel.sql:
            continue
        sql = expand(panel.sql, NOW - timedelta(hours=24), NOW, values={"tenant": ALL})
        reads = granules(store, sql)
        assert reads, (panel.title, sql)
        for selected, total in reads:
            # yesterday and today: 20,000 rows in sort order, at most 4 granules; and the three recent parts
            assert selected <= 7 and total > 35, (panel.title, selected, total)
        checked += 1
    assert checked >= 5
