"""Retention contracts and legal hold, enforced by ClickHouse TTL on the real engine (chDB).

Rows are written to otel_logs the way the collector's exporter writes them; the materialized view copies
the audit ones to audit_events; `OPTIMIZE TABLE ... FINAL` runs the merge that applies TTL. Both tables must
agree: nothing past its contract, nothing lost before it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditrail.events import AuditEvent
from auditrail_store import retention
from auditrail_store.db import Store, StoreError
from test_storage_schema import AUDITRAIL, audit_row, exporter_row, insert_rows, migrated_store

DAY_NS = 86400 * 10**9
AGES = (1, 40, 400, 800)  # days


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    yield from migrated_store(tmp_path_factory, "retention")


def _insert_ages(store: Store, tenant: str) -> None:
    now = time.time_ns()
    insert_rows(store, [audit_row(AuditEvent("crawl.run", tenant=tenant, actor="cron", payload=f'{{"age":{age}}}',
                                             time_unix_nano=now - age * DAY_NS)) for age in AGES])


def _ages(store: Store, tenant: str) -> tuple[list[int], list[int]]:
    """Ages in days of `tenant`'s rows after the TTL merge: (audit_events, otel_logs audit rows)."""
    for table in ("audit_events", "otel_logs"):
        store.command(f"OPTIMIZE TABLE auditrail.{table} FINAL")
    typed = store.query("SELECT dateDiff('day', timestamp, now64(9)) FROM auditrail.audit_events FINAL"
                        " WHERE tenant_id = {t:String} ORDER BY 1", {"t": tenant}).result_rows
    raw = store.query("SELECT dateDiff('day', Timestamp, now64(9)) FROM auditrail.otel_logs"
                      " WHERE LogAttributes['audit.tenant_id'] = {t:String} ORDER BY 1", {"t": tenant}).result_rows
    return [r[0] for r in typed], [r[0] for r in raw]


def test_rows_past_the_contract_expire_and_rows_within_it_or_on_hold_stay(store: Store) -> None:
    retention.set_days(store, "short", 30, force=True)
    retention.set_days(store, "long", 500)
    retention.set_days(store, "held", 30, force=True)
    retention.set_hold(store, "held", True)
    for tenant in ("short", "long", "held", "default"):
        _insert_ages(store, tenant)
    now = time.time_ns()
    insert_rows(store, [exporter_row(time_ns=now - age * DAY_NS, scope="myapp", body=f"app log {age}",
                                     attributes={"http.route": "/"}) for age in AGES])

    assert _ages(store, "short") == ([1], [1])
    assert _ages(store, "default") == ([1, 40], [1, 40])          # 365 days unless a contract says otherwise
    assert _ages(store, "long") == ([1, 40, 400], [1, 40, 400])    # a longer contract loses nothing early
    assert _ages(store, "held") == ([1, 40, 400, 800], [1, 40, 400, 800])
    app = store.query("SELECT Body FROM auditrail.otel_logs WHERE ScopeName = 'myapp' ORDER BY Body").result_rows
    assert [r[0] for r in app] == ["app log 1", "app log 40"]


def test_lifting_a_hold_lets_expired_rows_go(store: Store) -> None:
    retention.set_days(store, "lifted", 30, force=True)
    retention.set_hold(store, "lifted", True)
    _insert_ages(store, "lifted")
    assert _ages(store, "lifted") == ([1, 40, 400, 800], [1, 40, 400, 800])
    retention.set_hold(store, "lifted", False)
    assert _ages(store, "lifted") == ([1], [1])


def test_under_365_days_is_refused_without_force(store: Store) -> None:
    with pytest.raises(StoreError, match=r"refusing to keep tenant 'careful' for 90 days.*--force"):
        retention.set_days(store, "careful", 90)
    assert retention.contract(store, "careful").days == retention.DEFAULT_DAYS
    assert retention.set_days(store, "careful", 90, force=True).forced


@pytest.mark.parametrize("days", [0, -5, 36501])
def test_nonsense_day_counts_are_refused(store: Store, days: int) -> None:
    with pytest.raises(StoreError, match="--days must be"):
        retention.set_days(store, "x", days, force=True)


def test_every_change_is_kept_and_the_latest_one_counts(store: Store) -> None:
    retention.set_days(store, "history", 400, changed_by="alice")
    retention.set_hold(store, "history", True, changed_by="bob")
    retention.set_days(store, "history", 500, changed_by="carol")
    c = retention.contract(store, "history")
    assert (c.days, c.hold, c.changed_by) == (500, True, "carol")  # the hold survives a new contract
    rows = store.query("SELECT days, hold, changed_by FROM auditrail.retention_contracts"
                       " WHERE tenant_id = 'history' ORDER BY changed_at").result_rows
    assert rows == [(400, False, "alice"), (400, True, "bob"), (500, True, "carol")]


def test_tenant_names_are_data_not_sql(store: Store) -> None:
    tenant = "evil'), 1) DELETE WHERE 1 --"
    retention.set_days(store, tenant, 30, force=True)
    _insert_ages(store, tenant)
    assert _ages(store, tenant) == ([1], [1])
    with pytest.raises(StoreError, match="invalid tenant"):
        retention.set_days(store, "bad\ntenant", 400)


def test_cli_set_refuses_then_forces_holds_and_lists(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL="chdb://" + str(tmp_path / "store"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AUDITRAIL, *args], capture_output=True, text=True, env=env, timeout=120)

    assert cli("migrate").returncode == 0
    refused = cli("retention", "set", "--tenant", "acme", "--days", "30")
    assert refused.returncode == 2
    assert "refusing to keep tenant 'acme' for 30 days" in refused.stderr and "--force" in refused.stderr
    forced = cli("retention", "set", "--tenant", "acme", "--days", "30", "--force")
    assert forced.returncode == 0 and "acme: 30 days (forced below the default)" in forced.stdout
    held = cli("retention", "hold", "--tenant", "globex", "--on")
    assert held.returncode == 0 and "legal hold ON" in held.stdout
    listing = cli("retention", "list", "--url", env["AUDITRAIL_CLICKHOUSE_URL"])
    assert listing.returncode == 0
    lines = {line.split()[0]: line.split()[1:4] for line in listing.stdout.splitlines()[1:-1]}
    assert lines == {"acme": ["30", "no", "yes"], "globex": ["365", "yes", "no"]}
    assert "every other tenant: 365 days" in listing.stdout
    usage = cli("retention", "hold", "--tenant", "globex")
    assert usage.returncode == 2 and "one of the arguments --on --off is required" in usage.stderr


def test_cluster_retention_alters_the_local_tables_on_every_node_and_parse(store: Store) -> None:
    statements = retention.alter_statements(store, retention.contracts(store), "prod")
    assert [sql.split(" MODIFY TTL")[0] for sql, _ in statements] == [
        "ALTER TABLE `auditrail`.`audit_events_local` ON CLUSTER `prod`",
        "ALTER TABLE `auditrail`.`otel_logs_local` ON CLUSTER `prod`",
    ]
    for sql, _ in statements:
        formatted = store.query("SELECT formatQuery({q:String})", {"q": sql}).result_rows[0][0]
        assert "MODIFY TTL" in formatted and "{ttl_held:Array(String)}" in formatted
