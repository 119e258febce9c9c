"""Retention contracts and legal hold, enforced by ClickHouse TTL on the real engine (chDB).

Rows are written to otel_logs the way the collector's exporter writes them; the materialized view copies
the audit ones to audit_events; `OPTIMIZE TABLE ... FINAL` runs the merge that applies TTL. Both tables must
agree: nothing past its contract, nothing lost before it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditrail import semconv
from auditrail.events import AuditEvent
from auditrail_store import retention
from auditrail_store.db import Store, StoreError
from auditrail_store.ingest import LogWriter, decode_request
from otlp_requests import logs_request
from test_storage_schema import AUDITRAIL, EXPORTER_COLUMNS, audit_row, exporter_row, insert_rows, migrated_store

DAY_NS = 86400 * 10**9
AGES = (1, 40, 400, 800)  # days


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    yield from migrated_store(tmp_path_factory, "retention")


def _insert_received(store: Store, rows: list[list[Any]], received: list[datetime]) -> None:
    """Exporter rows that the store received at `received` (one per row): the receipt column is MATERIALIZED,
    which only this setting lets an INSERT name (the way to age rows in a test)."""
    lines = []
    for row, at in zip(rows, received, strict=True):
        record = dict(zip(EXPORTER_COLUMNS, row, strict=True))
        seconds, fraction = divmod(record["Timestamp"], 10**9)
        record["Timestamp"] = orjson.Fragment(b"%d.%09d" % (seconds, fraction))  # unquoted: exact ns
        record["__auditrail_received_at"] = at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        lines.append(orjson.dumps(record))
    columns = ", ".join(f"`{c}`" for c in (*EXPORTER_COLUMNS, "__auditrail_received_at"))
    store.command(f"INSERT INTO auditrail.otel_logs ({columns}) SETTINGS insert_allow_materialized_columns = 1"
                  " FORMAT JSONEachRow\n" + b"\n".join(lines).decode())


def _insert_ages(store: Store, tenant: str) -> None:
    """Events of `tenant` AGES days old, each received when it happened (as if the store has run for years)."""
    now = time.time_ns()
    rows = [audit_row(AuditEvent("crawl.run", tenant=tenant, actor="cron", payload=f'{{"age":{age}}}',
                                 time_unix_nano=now - age * DAY_NS)) for age in AGES]
    _insert_received(store, rows, [datetime.now(timezone.utc) - timedelta(days=age) for age in AGES])


def _after_ttl(store: Store, tenant: str, typed_expr: str, raw_expr: str) -> tuple[list[Any], list[Any]]:
    """`typed_expr` of `tenant`'s audit_events rows and `raw_expr` of its otel_logs rows after the TTL merge."""
    for table in ("audit_events", "otel_logs"):
        store.command(f"OPTIMIZE TABLE auditrail.{table} FINAL")
    typed = store.query(f"SELECT {typed_expr} AS v FROM auditrail.audit_events FINAL"
                        " WHERE tenant_id = {t:String} ORDER BY v", {"t": tenant}).result_rows
    raw = store.query(f"SELECT {raw_expr} AS v FROM auditrail.otel_logs"
                      " WHERE LogAttributes['audit.tenant_id'] = {t:String} ORDER BY v", {"t": tenant}).result_rows
    return [r[0] for r in typed], [r[0] for r in raw]


def _ages(store: Store, tenant: str) -> tuple[list[int], list[int]]:
    """Ages in days of `tenant`'s rows after the TTL merge: (audit_events, otel_logs audit rows)."""
    return _after_ttl(store, tenant, "dateDiff('day', timestamp, now64(9))", "dateDiff('day', Timestamp, now64(9))")


def test_rows_past_the_contract_expire_and_rows_within_it_or_on_hold_stay(store: Store) -> None:
    retention.set_days(store, "short", 30, force=True)
    retention.set_days(store, "long", 500)
    retention.set_days(store, "held", 30, force=True)
    retention.set_hold(store, "held", True)
    for tenant in ("short", "long", "held", "default"):
        _insert_ages(store, tenant)
    now = time.time_ns()
    _insert_received(store, [exporter_row(time_ns=now - age * DAY_NS, scope="myapp", body=f"app log {age}",
                                          attributes={"http.route": "/"}) for age in AGES],
                     [datetime.now(timezone.utc) - timedelta(days=age) for age in AGES])

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
    tenant = "a.b:c@d+e-f_G9"  # every character the tenant syntax allows beside letters and digits
    retention.set_days(store, tenant, 30, force=True)
    _insert_ages(store, tenant)
    assert _ages(store, tenant) == ([1], [1])
    for bad in ("evil'), 1) DELETE WHERE 1 --", "bad\ntenant", " ", "-x", ""):  # outside the one syntax
        with pytest.raises(StoreError, match="invalid tenant id"):
            retention.set_days(store, bad, 400)


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


# --- the clock starts when the store receives an event (issue 15) ---------------------------------------------

# Times an accepted event may carry: 0 (OTLP "unknown"), years before its tenant's contract, after 2106 (where a
# TTL's toDateTime wraps), the last nanosecond int64 holds, and now.
ODD_TIMES = {"zero": 0, "400 days old": time.time_ns() - 400 * DAY_NS, "800 days old": time.time_ns() - 800 * DAY_NS,
             "2150": 5_680_281_600 * 10**9, "int64 end": 2**63 - 1, "now": time.time_ns()}


def _odd_time_request(tenant: str) -> bytes:
    return logs_request(({"time_unix_nano": ns, "event_name": "crawl.run",
                          "attributes": {"audit.event_id": str(uuid.uuid4()), "audit.tenant_id": tenant,
                                         "audit.payload": json.dumps({"case": case})}}
                         for case, ns in ODD_TIMES.items()), service="late-app").SerializeToString()


def _cases(store: Store, tenant: str) -> tuple[list[str], list[str]]:
    """The `case` of `tenant`'s rows after the TTL merge: (audit_events, otel_logs)."""
    return _after_ttl(store, tenant, "JSONExtractString(payload, 'case')",
                      "JSONExtractString(LogAttributes['audit.payload'], 'case')")


def test_an_accepted_event_is_kept_its_retention_from_receipt_whatever_its_time(store: Store) -> None:
    """Ingested through the service's own decoder and writer, and as the collector's exporter writes them
    (straight into otel_logs): after the TTL merge every row is still there, on a 30-day contract too."""
    retention.set_days(store, "late30", 30, force=True)
    writer = LogWriter(store.client, store.database)
    for tenant in ("late", "late30"):
        batch = decode_request(_odd_time_request(tenant), "application/x-protobuf")
        assert writer.write(batch) == len(ODD_TIMES)
    insert_rows(store, [exporter_row(time_ns=ns, event_name="crawl.run", attributes={
        semconv.EVENT_ID: str(uuid.uuid4()), semconv.TENANT: "late-collector", semconv.PAYLOAD: json.dumps({"case": case})})
        for case, ns in ODD_TIMES.items()])
    every = sorted(ODD_TIMES)
    for tenant in ("late", "late30", "late-collector"):
        assert _cases(store, tenant) == (every, every), tenant


def test_the_retention_clock_runs_from_receipt(store: Store) -> None:
    """Received 40 days ago: gone on a 30-day contract whatever time the event carries; kept on the default."""
    retention.set_days(store, "received30", 30, force=True)
    for tenant in ("received30", "received365"):
        rows = [exporter_row(time_ns=ns, event_name="crawl.run", attributes={
            semconv.EVENT_ID: str(uuid.uuid4()), semconv.TENANT: tenant, semconv.PAYLOAD: json.dumps({"case": case})})
            for case, ns in ODD_TIMES.items() if case != "now"]
        _insert_received(store, rows, [datetime.now(timezone.utc) - timedelta(days=40)] * len(rows))
    # An event time later than its receipt counts from the event time: 2150 and the int64 end stay.
    assert _cases(store, "received30") == (["2150", "int64 end"], ["2150", "int64 end"])
    kept = sorted(c for c in ODD_TIMES if c != "now")
    assert _cases(store, "received365") == (kept, kept)


# A store upgraded across a migration that sets a TTL on audit rows: contracts set and rows received over the
# years (AGES), read, migrated, read again. argv: store URL, the first migration applied in the upgrade, and
# "old-runner" to apply the upgrade up to 0037 as the runner did before retention.with_contracts (the store
# then lost rows: 0037 puts them back).
_UPGRADE = """
import sys
from auditrail_store import migrate as migrate_module, retention
from auditrail_store.db import Store
from test_retention import _insert_ages
url, first, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
every = migrate_module.load_migrations()
read = ("SELECT tenant_id, dateDiff('day', timestamp, now64(9)) AS age, toString(event_id), ver,"
        " toString(inserted_at) FROM auditrail.audit_events FINAL ORDER BY tenant_id, age")
with Store.open(url) as store:
    migrate_module.load_migrations = lambda: [m for m in every if m.version < first]
    migrate_module.migrate(store)
    retention.set_days(store, "long", 3650)
    retention.set_hold(store, "held", True)
    for tenant in ("long", "held", "default"):
        _insert_ages(store, tenant)
    print(store.query(read).result_rows)
    if mode == "old-runner":
        fixed, retention.with_contracts = retention.with_contracts, lambda sql, kept: (sql, {})
        migrate_module.load_migrations = lambda: [m for m in every if m.version < 37]
        migrate_module.migrate(store)
        print(store.query(read).result_rows)
        retention.with_contracts = fixed
    migrate_module.load_migrations = lambda: every
    print(migrate_module.migrate(store))
    print(store.query(read).result_rows)
"""


def _upgrade(tmp_path: Path, first: int, mode: str = "") -> list[list[tuple[Any, ...]]]:
    done = subprocess.run([sys.executable, "-c", _UPGRADE, f"chdb://{tmp_path}/store", str(first), mode or "-"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr[-3000:]
    return [ast.literal_eval(line) for line in done.stdout.strip().splitlines()]


@pytest.mark.parametrize("first", [12, 36])
def test_an_upgrade_that_copies_audit_rows_keeps_longer_contracts_and_holds(tmp_path: Path, first: int) -> None:
    """0012 and 0036 make a new audit_events and copy every row into it: the contracts are its TTL from the
    start (the engine applies a TTL as rows are inserted), so nothing of a longer contract or a hold is lost."""
    before, applied, after = _upgrade(tmp_path, first)
    assert [a for a in applied if int(a[:4]) in (12, 36)][0].startswith(f"{first:04d}_")
    kept = [row for row in before if row[0] != "default" or row[1] < 365]  # the default's older ones may go
    assert [(t, age) for t, age, *_ in kept] == [
        ("default", 1), ("default", 40), ("held", 1), ("held", 40), ("held", 400), ("held", 800),
        ("long", 1), ("long", 40), ("long", 400), ("long", 800)]
    assert after == kept  # every row, with its version and receipt


def test_0037_puts_back_the_rows_an_earlier_upgrade_dropped(tmp_path: Path) -> None:
    """A store upgraded to 0036 by the runner before the fix lost its held and long-contract rows received more
    than 365 days before (kept in audit_events_v2): 0037 copies them back, with their version and receipt."""
    before, lost, applied, after = _upgrade(tmp_path, 36, "old-runner")
    assert [(t, age) for t, age, *_ in lost] == [("default", 1), ("default", 40), ("held", 1), ("held", 40),
                                                 ("long", 1), ("long", 40)]
    assert applied == ["0037_restore_rows_dropped_by_migration_ttl"]
    assert after == before


def test_every_migration_ttl_on_audit_rows_is_one_the_runner_renders_with_the_contracts() -> None:
    """From 0011 on (contracts exist from 0004), a migration's TTL must be the default clause that
    retention.with_contracts replaces: any other would apply the default to rows of longer contracts."""
    from auditrail_store.migrate import load_migrations, render

    contracts = [retention.Contract("long", 3650, True, False, None, "")]
    seen = 0
    for m in load_migrations():
        for sql in render(m.text, "auditrail") + render(m.text, "auditrail", "c"):
            if m.version >= 11 and re.search(r"\bTTL\b", sql):
                rendered, params = retention.with_contracts(sql, contracts)
                assert params["ttl_held"] == ["long"] and "86400 * 365" not in rendered, (m.name, sql[:200])
                seen += 1
    assert seen >= 5  # 0011 (2 tables), 0012 (2), 0036
