"""The ClickHouse schema on the real engine (chDB through clickhouse-connect): migrations, otel_logs as the
collector's exporter makes it, audit_events filled by the materialized view, dedup, identifiers, cluster DDL.

chDB runs one data directory per process: this module opens one Store (module scope) and closes it;
CLI tests run in subprocesses with directories of their own.
"""

from __future__ import annotations

import ast
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

import pytest

from auditrail import semconv
from auditrail.chain import Chain
from auditrail.events import AuditEvent, severity_for
from auditrail_store import migrate as migrate_module
from auditrail_store.db import EVENT_COLUMNS, SEED_COLUMNS, Store, StoreError, check_identifier, select_events
from auditrail_store.migrate import Migration, apply_grants, load_migrations, migrate, plan, render
from auditrail_store.verify_store import event_conflicts

REPO = Path(__file__).resolve().parent.parent
AUDITRAIL = str(REPO / ".venv" / "bin" / "auditrail")
MIGRATIONS = REPO / "storage" / "auditrail_store" / "migrations"

# The exporter's INSERT column list at v0.161.0 (internal/sqltemplates/logs_insert.sql + the EventName feature
# column it adds after DESC TABLE finds it), with the types its Go values are encoded as.
EXPORTER_INSERT_COLUMNS = {
    "Timestamp": "DateTime64(9)", "TraceId": "String", "SpanId": "String", "TraceFlags": "UInt8",
    "SeverityText": "LowCardinality(String)", "SeverityNumber": "UInt8", "ServiceName": "LowCardinality(String)",
    "Body": "String", "ResourceSchemaUrl": "LowCardinality(String)",
    "ResourceAttributes": "Map(LowCardinality(String), String)", "ScopeSchemaUrl": "LowCardinality(String)",
    "ScopeName": "String", "ScopeVersion": "LowCardinality(String)",
    "ScopeAttributes": "Map(LowCardinality(String), String)", "LogAttributes": "Map(LowCardinality(String), String)",
    "EventName": "String",
}
EXPORTER_COLUMNS = tuple(EXPORTER_INSERT_COLUMNS)
# Event times within the 365-day default contract (older rows would rightly expire at the next merge).
RECENT_NS = (time.time_ns() // 10**9 - 86400) * 10**9 + 123_456_789


def exporter_row(
    *,
    time_ns: int,
    attributes: dict[str, Any],
    event_name: str = "",
    scope: str = "auditrail",
    service: str = "assistant-admin",
    severity: tuple[int, str] = (9, "INFO"),
    body: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> list[Any]:
    """One otel_logs row as the clickhouse exporter appends it: attribute values as strings (pcommon AsString)."""
    as_string = {k: (v if isinstance(v, str) else str(v)) for k, v in attributes.items()}
    return [time_ns, trace_id, span_id, 1 if trace_id else 0, severity[1], severity[0], service, body, "",
            {"service.name": service}, "", scope, "0.1.0", {}, as_string, event_name]


def audit_row(event: AuditEvent, **kw: Any) -> list[Any]:
    """The exporter's row for an audit event from the real instrumentation model."""
    number, text = severity_for(event.risk)
    return exporter_row(time_ns=event.time_unix_nano, attributes=event.attributes(), event_name=event.event_type,
                        severity=(number, text), body=event.body(), **kw)


def insert_rows(store: Store, rows: list[list[Any]]) -> None:
    """One INSERT into otel_logs, as one exporter batch."""
    store.insert("otel_logs", rows, EXPORTER_COLUMNS)


def migrated_store(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Store]:
    """A migrated embedded store in a fresh directory, closed afterwards (chDB: one directory at a time)."""
    s = Store.open("chdb://" + str(tmp_path_factory.mktemp(name) / "store"))
    migrate(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    yield from migrated_store(tmp_path_factory, "schema")


# --- migrations ---------------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_records_each_file_with_its_checksum(store: Store) -> None:
    assert migrate(store) == []
    rows = store.query("SELECT version, name, checksum FROM auditrail.schema_migrations ORDER BY version").result_rows
    assert [(v, n, c) for v, n, c in rows] == [(m.version, m.name, m.checksum) for m in load_migrations()]
    assert [n for _, n, _ in rows][:5] == ["otel_logs", "audit_events", "audit_events_mv", "retention",
                                           "audit_events_unique"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", c) for _, _, c in rows)


def test_an_edited_applied_migration_is_an_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_migrations()[0]
    edited = Migration(first.version, first.name, first.text + "\n-- edited after release\n")
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: [edited])
    with pytest.raises(StoreError, match="0001_otel_logs changed after it was applied"):
        migrate(store)


def test_migration_files_are_numbered_in_sequence() -> None:
    names = sorted(p.name for p in MIGRATIONS.glob("0*.sql"))
    assert [n[:4] for n in names if int(n[:4]) < 10] == ["0001", "0002", "0003", "0004", "0005"]
    assert [m.version for m in load_migrations()] == sorted({int(n[:4]) for n in names})


# --- otel_logs as the exporter creates it ----------------------------------------------------------------


def _declared_columns(sql: str) -> list[tuple[str, str, str, str, str, str]]:
    """(name, type, default kind, default expression, comment, codec args) of each column of a CREATE TABLE."""
    out = []
    pattern = re.compile(
        r"^\s+`(?P<name>[^`]+)` (?P<type>.+?)(?: (?P<kind>MATERIALIZED|DEFAULT) (?P<expr>.+?))?"
        r"(?: COMMENT '(?P<comment>[^']*)')?(?: CODEC\((?P<codec>.*)\))?,?$")
    for line in sql.splitlines():
        match = pattern.match(line)
        if match:
            g = match.groupdict()
            out.append((g["name"], g["type"], g["kind"] or "", g["expr"] or "", g["comment"] or "", g["codec"] or ""))
    return out


def test_otel_logs_columns_types_codecs_equal_the_exporter_ddl(store: Store) -> None:
    declared = _declared_columns(render((MIGRATIONS / "0001_otel_logs.sql").read_text(), "auditrail")[0])
    # DESCRIBE: name, type, default_type, default_expression, comment, codec_expression. ALIAS columns are
    # computed at read time, stored nowhere and outside every INSERT (0025: TimestampTime for Grafana).
    described = [tuple(r[:6]) for r in store.query("DESCRIBE TABLE auditrail.otel_logs").result_rows
                 if r[2] != "ALIAS"]
    # The exporter's columns, then the one column of ours (migration 0011: the receipt time retention counts
    # from; MATERIALIZED, so the exporter's inserts, which name their columns, never see it).
    assert [(n, t, k, e, c, codec) for n, t, k, e, c, codec in described[:24]] == declared
    assert len(declared) == 24
    assert [tuple(r[:3]) for r in described[24:]] == [("__auditrail_received_at", "DateTime64(3, 'UTC')", "MATERIALIZED")]
    types = {n: t for n, t, *_ in described}
    assert {n: types[n] for n in EXPORTER_COLUMNS} == EXPORTER_INSERT_COLUMNS


def test_grafana_otel_schema_1_2_9_reads_timestamptime_and_exporter_inserts_still_work(store: Store) -> None:
    """0025's ALIAS column: an insert naming the exporter's columns (logs_insert.sql), and the unnamed form, run
    unchanged; the data source's OTel schema 1.2.9 filter on TimestampTime finds the row; SELECT * omits it."""
    now = time.time_ns()
    insert_rows(store, [exporter_row(time_ns=now, attributes={"audit.tenant_id": "tt-alias"}, event_name="x.y")])
    star = store.query("SELECT * FROM auditrail.otel_logs LIMIT 1").column_names
    assert "TimestampTime" not in star and star == EXPORTER_COLUMNS
    store.command("INSERT INTO auditrail.otel_logs SELECT * FROM auditrail.otel_logs"
                  " WHERE LogAttributes['audit.tenant_id'] = 'tt-alias'")
    found = store.query(
        "SELECT TimestampTime, toDateTime(Timestamp) FROM auditrail.otel_logs WHERE TimestampTime >= now() - 600"
        " AND LogAttributes['audit.tenant_id'] = 'tt-alias' ORDER BY TimestampTime DESC").result_rows
    assert len(found) == 2 and found[0][0] == found[0][1]


def test_otel_logs_keys_and_engine_are_the_exporters(store: Store) -> None:
    engine, partition, sorting, primary = store.query(
        "SELECT engine, partition_key, sorting_key, primary_key FROM system.tables"
        " WHERE database = 'auditrail' AND name = 'otel_logs'").result_rows[0]
    assert (engine, partition) == ("MergeTree", "toDate(Timestamp)")
    assert sorting == primary == "toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp"


def test_the_embedded_engine_makes_small_parts_compact_and_large_ones_wide(store: Store) -> None:
    """db.ENGINE_CONFIG, an engine-level setting (the tables' DDL is untouched): an insert's part is compact
    (a few files instead of two a column), a part from 32 MiB up is wide."""
    assert "min_bytes_for_wide_part" not in store.query(
        "SELECT create_table_query FROM system.tables WHERE database = 'auditrail' AND name = 'otel_logs'"
    ).result_rows[0][0]
    assert store.query("SELECT value FROM system.merge_tree_settings WHERE name = 'min_bytes_for_wide_part'"
                       ).result_rows == [("33554432",)]
    store.command("CREATE TABLE auditrail.part_kinds (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    try:
        store.command("SYSTEM STOP MERGES auditrail.part_kinds")
        for rows in (1_000, 150_000, 400_000):  # ~15 MB: wide by the engine's default (10 MiB); ~41 MB
            store.command(f"INSERT INTO auditrail.part_kinds SELECT number, repeat('x', 100) FROM numbers({rows})")
        kinds = store.query("SELECT part_type FROM system.parts WHERE database = 'auditrail' "
                            "AND table = 'part_kinds' AND active ORDER BY rows").result_rows
        assert kinds == [("Compact",), ("Compact",), ("Wide",)]
    finally:
        store.command("DROP TABLE auditrail.part_kinds SYNC")


def test_the_sql_file_records_its_upstream_source() -> None:
    header = (MIGRATIONS / "0001_otel_logs.sql").read_text().split("CREATE TABLE")[0]
    for fact in ("opentelemetry-collector-contrib", "internal/sqltemplates/logs_table.sql", "v0.161.0",
                 "create_schema: false"):
        assert fact in header


# --- audit_events through the materialized view -----------------------------------------------------------


def _chained(event: AuditEvent, chain: Chain) -> AuditEvent:
    chain.link(event)
    return event


def test_exporter_rows_fill_audit_events_with_audit_records_only(store: Store) -> None:
    chain = Chain()
    event = _chained(AuditEvent(
        "admin.impersonation.start", tenant="mv-acme", actor="bob@globex.com", actor_type="user",
        payload='{"impersonated":"bob@globex.com","session":"s-1"}', source_ip="203.0.113.9",
        reason="ticket 7", outcome="success", risk="critical", impersonator="ops@vendor.io",
        impersonation_id="s-1", approval_id="ap-9", time_unix_nano=RECENT_NS,
        extra={"deployment.ring": "canary"}), chain)
    app_log = exporter_row(time_ns=event.time_unix_nano, attributes={"http.route": "/x"}, scope="myapp",
                           body="GET /x 200")
    foreign_otel_event = exporter_row(time_ns=event.time_unix_nano + 1, scope="billing-svc",
                                      event_name="billing.plan.change",
                                      attributes={semconv.EVENT_ID: str(uuid.uuid4()), semconv.TENANT: "mv-acme"})
    scope_without_id = exporter_row(time_ns=event.time_unix_nano + 2, attributes={"note": "no id"})
    insert_rows(store, [audit_row(event, trace_id="ab" * 16, span_id="cd" * 8), app_log, foreign_otel_event,
                        scope_without_id])

    sql, params = select_events(store, "mv-acme")
    result = store.query(sql, params)
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    assert [r["event_type"] for r in rows] == ["admin.impersonation.start", "billing.plan.change"]
    got = rows[0]
    assert got == {
        "event_id": uuid.UUID(event.event_id),
        "event_type": "admin.impersonation.start",
        "timestamp": got["timestamp"],
        "tenant_id": "mv-acme",
        "actor": "bob@globex.com",
        "source_ip": "203.0.113.9",
        "payload": '{"impersonated":"bob@globex.com","session":"s-1"}',
        "actor_type": "user",
        "reason": "ticket 7",
        "outcome": "success",
        "risk": "critical",
        "impersonator_id": "ops@vendor.io",
        "impersonation_id": "s-1",
        "approval_id": "ap-9",
        "chain_id": chain.chain_id,
        "chain_seq": 1,
        "chain_prev_hash": "0" * 64,
        "chain_hash": chain.head,
        "service_name": "assistant-admin",
        "severity_text": "WARN",
        "severity_number": 13,
        "trace_id": "ab" * 16,
        "span_id": "cd" * 8,
        "attributes": {"deployment.ring": "canary"},
        "inserted_at": got["inserted_at"],
    }
    ns = store.query("SELECT toUnixTimestamp64Nano(timestamp), timezoneOf(timestamp) FROM auditrail.audit_events"
                     " WHERE event_id = {id:UUID}", {"id": event.event_id}).result_rows
    assert ns == [(RECENT_NS, "UTC")]  # nanoseconds kept
    assert got["timestamp"].replace(tzinfo=timezone.utc) == datetime.fromtimestamp(RECENT_NS // 1000 / 1e6, timezone.utc)
    assert list(result.column_names[: len(SEED_COLUMNS)]) == list(SEED_COLUMNS)


def test_absent_attributes_are_null_and_empty_strings_stay_empty(store: Store) -> None:
    event = AuditEvent("crawl.run", tenant="mv-nulls", actor=None, reason="", payload="{}")
    insert_rows(store, [audit_row(event)])
    sql, params = select_events(store, "mv-nulls", columns=("actor", "reason", "source_ip", "chain_seq", "payload"))
    assert store.query(sql, params).result_rows == [(None, "", None, None, "{}")]


def test_an_event_id_that_is_no_uuid_is_kept_verbatim(store: Store) -> None:
    row = exporter_row(time_ns=RECENT_NS, event_name="deploy.finish", scope="ci",
                       attributes={semconv.EVENT_ID: "build-42", semconv.TENANT: "mv-odd"})
    insert_rows(store, [row])
    sql, params = select_events(store, "mv-odd", columns=("event_id", "attributes"))
    assert store.query(sql, params).result_rows == [(uuid.UUID(int=0), {"audit.event_id": "build-42"})]


def test_replayed_event_is_visible_once(store: Store) -> None:
    event = AuditEvent("policy.update", tenant="mv-dup", actor="alice", payload='{"before":{},"after":{}}')
    store.command("SYSTEM STOP MERGES auditrail.audit_events")  # (the copies must not be merged before we count)
    try:
        for _ in range(3):  # three batches: a retry after a lost ack, then a spool replay after a crash
            insert_rows(store, [audit_row(event)])
        raw = "SELECT count() FROM auditrail.audit_events WHERE tenant_id = 'mv-dup'"
        assert store.query(raw).result_rows[0][0] == 3  # stored three times, until merged
        sql, params = select_events(store, "mv-dup")
        assert len(store.query(sql, params).result_rows) == 1
        view = "SELECT count() FROM auditrail.audit_events_unique WHERE tenant_id = 'mv-dup'"
        assert store.query(view).result_rows[0][0] == 1
    finally:
        store.command("SYSTEM START MERGES auditrail.audit_events")
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    assert store.query(raw).result_rows[0][0] == 1
    assert event_conflicts(store, "mv-dup", None) == []  # one version, three copies: a replay, no conflict


def test_an_event_id_is_one_row_whatever_its_copies_differ_in_and_the_first_stored_wins(store: Store) -> None:
    """Issue 15: resending an event id with another time, or another content, added rows. Every read shows the
    first stored version alone, before and after merges; event_conflicts counts the others."""
    first = AuditEvent("policy.update", tenant="dedup", actor="alice", payload='{"v":1}', time_unix_nano=RECENT_NS)
    later = [
        AuditEvent("policy.update", tenant="dedup", actor="alice", payload='{"v":1}', event_id=first.event_id,
                   time_unix_nano=RECENT_NS + 3_600 * 10**9),  # another time
        AuditEvent("policy.update", tenant="dedup", actor="mallory", payload='{"v":2}', event_id=first.event_id,
                   time_unix_nano=RECENT_NS),  # the same time, other content
        AuditEvent("policy.update", tenant="dedup", actor="alice", payload='{"v":1}', event_id=first.event_id,
                   time_unix_nano=RECENT_NS - 40 * 86400 * 10**9),  # earlier, another month
        first,  # a plain replay
    ]
    other = AuditEvent("policy.update", tenant="dedup", actor="bob", payload='{"v":9}', time_unix_nano=RECENT_NS + 1)
    store.command("SYSTEM STOP MERGES auditrail.audit_events")
    try:
        insert_rows(store, [audit_row(first), audit_row(other)])
        for event in later:
            insert_rows(store, [audit_row(event)])
        reads = {
            "select_events": select_events(store, "dedup", columns=("event_id", "timestamp", "actor", "payload")),
            "audit_events_unique": ("SELECT event_id, timestamp, actor, payload FROM auditrail.audit_events_unique"
                                    " WHERE tenant_id = 'dedup' ORDER BY actor", {}),
        }
        for name, (sql, params) in reads.items():
            rows = {r[0]: r[1:] for r in store.query(sql, params).result_rows}
            assert len(store.query(sql, params).result_rows) == 2, name
            assert rows[uuid.UUID(first.event_id)][1:] == ("alice", '{"v":1}'), name
            assert int(rows[uuid.UUID(first.event_id)][0].timestamp() * 1e6) == RECENT_NS // 1000, name
        count = "SELECT count() FROM auditrail.audit_events_unique WHERE tenant_id = 'dedup'"
        assert store.query(count).result_rows[0][0] == 2
    finally:
        store.command("SYSTEM START MERGES auditrail.audit_events")
    store.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    raw = store.query("SELECT actor, payload, timestamp FROM auditrail.audit_events WHERE tenant_id = 'dedup'"
                      " ORDER BY actor").result_rows
    assert [(a, p) for a, p, _ in raw] == [("alice", '{"v":1}'), ("bob", '{"v":9}')]  # merged: the first stays
    assert event_conflicts(store, "dedup", None) == [{"event_id": first.event_id, "versions": 4, "copies": 5}]


def test_conflicts_cost_the_insert_nothing_and_a_copy_in_another_attribute_order_is_a_replay(store: Store) -> None:
    """Issue 15: counting versions in a view on audit_events cost 10-15% of ingest CPU. An insert now feeds only
    audit_events (and source_ips from it); conflicts are counted from otel_logs when read. The attributes of a
    copy written by another writer in another order are the same content: a replay, not a conflict."""
    feeds = store.query("SELECT name, dependencies_table FROM system.tables WHERE database = 'auditrail'"
                        " AND name IN ('otel_logs', 'audit_events') ORDER BY name").result_rows
    assert feeds == [("audit_events", ["source_ips_mv"]), ("otel_logs", ["audit_events_mv"])]
    event = AuditEvent("policy.update", tenant="order", actor="alice", payload='{"v":1}', time_unix_nano=RECENT_NS)
    row = audit_row(event)
    attributes = {**row[14], "x.one": "1", "x.two": "2"}
    rows = [row[:14] + [dict(sorted(attributes.items())), row[15]],
            row[:14] + [dict(sorted(attributes.items(), reverse=True)), row[15]]]
    insert_rows(store, rows)
    assert store.query("SELECT count() FROM auditrail.otel_logs WHERE LogAttributes['audit.tenant_id'] = 'order'"
                       " GROUP BY mapKeys(LogAttributes)").result_rows == [(1,), (1,)]  # stored in both orders
    assert event_conflicts(store, "order", None) == []
    insert_rows(store, [row[:14] + [{**attributes, "x.two": "3"}, row[15]]])
    assert event_conflicts(store, "order", None) == [{"event_id": event.event_id, "versions": 2, "copies": 3}]


_BEFORE_0034 = """
import sys
from auditrail.events import AuditEvent
from auditrail_store import migrate as migrate_module
from auditrail_store.db import Store
from auditrail_store.verify_store import event_conflicts
from test_storage_schema import RECENT_NS, audit_row, insert_rows
every = migrate_module.load_migrations()
first = AuditEvent("policy.update", tenant="old", actor="alice", payload='{"v":1}', time_unix_nano=RECENT_NS)
copies = [first, first, AuditEvent("policy.update", tenant="old", actor="alice", payload='{"v":2}',
                                   event_id=first.event_id, time_unix_nano=RECENT_NS + 10**9),
          AuditEvent("policy.update", tenant="old", actor="bob", payload='{"v":3}', time_unix_nano=RECENT_NS)]
with Store.open(sys.argv[1]) as store:
    migrate_module.load_migrations = lambda: [m for m in every if m.version < 34]
    migrate_module.migrate(store)
    for event in copies:
        insert_rows(store, [audit_row(event)])
    print(store.query("SELECT event_key, uniqExact(version), sum(copies) FROM auditrail.audit_event_versions"
                      " GROUP BY event_key HAVING uniqExact(version) > 1").result_rows)
    migrate_module.load_migrations = lambda: every
    print(migrate_module.migrate(store))
    print([(c["event_id"], c["versions"], c["copies"]) for c in event_conflicts(store, "old", None)])
    print(store.query("SELECT name FROM system.tables WHERE database = 'auditrail' AND name LIKE 'audit_event_versions%'"
                      " ORDER BY name").result_rows)
"""


def test_a_store_migrated_past_0034_reports_the_conflicts_its_versions_table_counted(tmp_path: Path) -> None:
    """0034 drops the view that fed audit_event_versions: the conflicts stored before are counted from otel_logs."""
    done = subprocess.run([sys.executable, "-c", _BEFORE_0034, f"chdb://{tmp_path}/store"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stderr[-3000:]
    before, applied, after, tables = done.stdout.strip().splitlines()[-4:]
    assert ast.literal_eval(applied)[0] == "0034_conflicts_from_otel_logs"  # then any later migrations
    assert before == after and after.count("(") == 1 and ", 2, 3)" in after  # one id: 2 versions, 3 copies
    assert tables == "[('audit_event_versions',)]"  # its view is gone: nothing writes the table



_BEFORE_0036 = """
import sys
import uuid
from auditrail.events import AuditEvent
from auditrail_store import migrate as migrate_module
from auditrail_store.db import Store, select_events
from test_storage_schema import RECENT_NS, audit_row, insert_rows
every = migrate_module.load_migrations()
first = AuditEvent("policy.update", tenant="old", actor="alice", payload='{"v":1}', time_unix_nano=RECENT_NS)
copy = AuditEvent("policy.update", tenant="old", actor="mallory", payload='{"v":2}', event_id=first.event_id,
                  time_unix_nano=RECENT_NS - 20 * 86400 * 10**9)
v4 = AuditEvent("crawl.run", tenant="old", actor="bob", event_id=str(uuid.uuid4()), time_unix_nano=RECENT_NS)
named = AuditEvent("crawl.run", tenant="old", actor="carol", event_id="order-17", time_unix_nano=RECENT_NS)
read = "SELECT event_id, actor, payload FROM auditrail.audit_events_unique WHERE tenant_id = 'old' ORDER BY actor"
with Store.open(sys.argv[1]) as store:
    migrate_module.load_migrations = lambda: [m for m in every if m.version < 36]
    migrate_module.migrate(store)
    for event in (first, v4, named, copy):
        insert_rows(store, [audit_row(event)])
    print(store.query(read).result_rows)
    migrate_module.load_migrations = lambda: every
    print(migrate_module.migrate(store))
    print(store.query(read).result_rows)
    print(store.query("SELECT sorting_key FROM system.tables WHERE database = 'auditrail' AND name = 'audit_events'"
                      ).result_rows)
    print(store.query("SELECT uniqExact(event_key, ver) FROM auditrail.audit_events").result_rows,
          store.query("SELECT uniqExact(event_key, ver) FROM auditrail.audit_events_v2").result_rows)
    days = store.query("SELECT actor, key_day FROM auditrail.audit_events FINAL WHERE tenant_id = 'old'"
                       " ORDER BY actor").result_rows
    print([(actor.split("@")[0], "its day" if day == (uuid.UUID(first.event_id).int >> 80) // 86_400_000 else day)
           for actor, day in days])
    sql, params = select_events(store, "old", columns=("actor",))
    print(store.query(sql, params).result_rows)
    store.command("INSERT INTO auditrail.audit_events (event_id, event_type, timestamp, tenant_id, source_ip,"
                  " service_name, severity_text, severity_number) VALUES (generateUUIDv7(), 'crawl.run', now64(9),"
                  " 'new', '192.0.2.9', 's', 'INFO', 9)")
    print(store.query("SELECT tenant_id, source_ip FROM auditrail.source_ips WHERE tenant_id = 'new'"
                      " GROUP BY ALL").result_rows)
"""


def test_a_store_migrated_past_0035_keeps_each_event_once_first_stored_first_in_the_new_key_order(
        tmp_path: Path) -> None:
    """0036 reorders audit_events by (key_day, tenant_id, event_key): rows and versions copied, the first
    stored version still wins, ids without UUIDv7 time sort last, and inserts still feed source_ips."""
    done = subprocess.run([sys.executable, "-c", _BEFORE_0036, f"chdb://{tmp_path}/store"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    assert done.returncode == 0, done.stderr[-3000:]
    before, applied, after, key, counts, days, exported, addresses = done.stdout.strip().splitlines()[-8:]
    assert ast.literal_eval(applied)[0] == "0036_audit_events_by_key_day"
    assert after == before and "mallory" not in after and after.count("UUID(") == 3  # alice, bob, carol once each
    assert key == "[('key_day, tenant_id, event_key',)]"
    assert counts == "[(4,)] [(4,)]"  # every row with its version (the conflict's copy too, which FINAL outvotes)
    # alice's UUIDv7 id: the day of its time (days since 1970); bob's UUIDv4 and carol's no-UUID id: 65535
    assert days == "[('alice', 'its day'), ('bob', 65535), ('carol', 65535)]"
    assert exported == "[('alice',), ('bob',), ('carol',)]"  # the export's order: UUIDv7 time, then the others by id
    assert addresses == "[('new', '192.0.2.9')]"  # source_ips_mv feeds from the new table

def test_reads_are_scoped_to_one_tenant_and_filters_are_bound(store: Store) -> None:
    base = RECENT_NS - RECENT_NS % 10**9
    events = [AuditEvent(t, tenant=tenant, actor=actor, time_unix_nano=base + i * 10**9)
              for i, (t, tenant, actor) in enumerate([
                  ("billing.plan.change", "iso-a", "ann"), ("billing.grace.start", "iso-a", "bo"),
                  ("prompt.update", "iso-a", "ann"), ("prompt.update", "iso-b", "ann")])]
    insert_rows(store, [audit_row(e) for e in events])

    def read(tenant: str, **kw: Any) -> list[str]:
        sql, params = select_events(store, tenant, columns=("event_type",), **kw)
        return [r[0] for r in store.query(sql, params).result_rows]

    assert read("iso-a") == ["billing.plan.change", "billing.grace.start", "prompt.update"]
    assert read("iso-b") == ["prompt.update"]
    assert read("iso-a", event_type="billing.") == ["billing.plan.change", "billing.grace.start"]
    assert read("iso-a", event_type="billing.*", actor="bo") == ["billing.grace.start"]
    since = datetime.fromtimestamp(base / 1e9 + 1, timezone.utc)
    assert read("iso-a", since=since, until=since + timedelta(seconds=1)) == ["billing.grace.start"]
    assert read("*") == []  # the global tenant: a tenant like any other
    for attack in ("iso-a' OR '1'='1", "iso-b' --", "*", "iso-%"):
        if attack != "*":  # not a tenant id (db.TENANT_SYNTAX): refused before any SQL is built
            with pytest.raises(StoreError, match="invalid tenant id"):
                read(attack)
        assert read("iso-b", actor=attack, event_type=attack) == []
    with pytest.raises(StoreError, match="tenant is required"):
        select_events(store, "")
    with pytest.raises(StoreError, match="unknown column"):
        select_events(store, "iso-a", columns=("event_id", "1; DROP TABLE x"))


def test_event_columns_start_with_the_seed_fields() -> None:
    assert EVENT_COLUMNS[:7] == ("event_id", "event_type", "timestamp", "tenant_id", "actor", "source_ip", "payload")


# --- identifiers, append-only, cluster, grants -------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "1abc", "audit-trail", "a.b", "x`; DROP DATABASE y", "a b", "é", "a" * 65])
def test_bad_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(StoreError, match="invalid"):
        check_identifier(bad, "database name")
    with pytest.raises(StoreError, match="invalid"):
        Store.open("chdb:///nonexistent/never-opened", database=bad)
    with pytest.raises(StoreError, match="invalid cluster name"):
        plan("auditrail", cluster=bad or " ")


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(StoreError, match="unsupported storage URL"):
        Store.open("postgres://u:secret@h/db")
    with pytest.raises(StoreError, match=r"u:\*\*\*@h"):
        Store.open("ftp://u:secret@h/db")


def test_no_update_or_delete_path_in_the_store_code() -> None:
    package = REPO / "storage" / "auditrail_store"
    mutation = re.compile(r"ALTER\s+TABLE\s+\S+(\s+ON\s+CLUSTER\s+\S+)?\s+(UPDATE|DELETE)\b|DELETE\s+FROM|"
                          r"\bTRUNCATE\b|DROP\s+(TABLE|DATABASE|PARTITION)|\bUPDATE\s+\S+\s+SET\b", re.I)
    code = {p.name: re.sub(r"--[^\n]*", "", p.read_text()) if p.suffix == ".sql" else p.read_text()
            for p in sorted(package.rglob("*")) if p.suffix in (".py", ".sql")}
    offenders = [f"{name}: {m.group(0)}" for name, text in code.items() for m in mutation.finditer(text)]
    assert offenders == []


def test_cluster_ddl_is_replicated_distributed_and_parses(store: Store) -> None:
    steps = plan("auditrail", cluster="prod", grants=True)
    statements = [sql for _, sqls in steps for sql in sqls]
    for sql in statements:
        formatted = store.query("SELECT formatQuery({q:String})", {"q": sql}).result_rows[0][0]
        if formatted.startswith("INSERT INTO"):  # a data copy (0012) or a backfill (0031): through the Distributed tables
            assert "_local" not in formatted.split("FROM")[0], formatted
            continue
        assert "ON CLUSTER prod" in formatted or formatted.startswith("GRANT ON CLUSTER prod"), formatted
    text = "\n".join(statements)
    assert "`otel_logs_local` ON CLUSTER `prod`" in text and "ENGINE = ReplicatedMergeTree()" in text
    assert "ENGINE = ReplicatedReplacingMergeTree" in text
    for table in ("otel_logs", "audit_events", "retention_contracts"):
        assert f"ENGINE = Distributed(`prod`, `auditrail`, `{table}_local`" in text
    assert "TO `auditrail`.`audit_events_local`" in text and "FROM `auditrail`.`otel_logs_local`" in text
    single = "\n".join(sql for _, sqls in plan("auditrail") for sql in sqls)
    assert "Distributed" not in single and "ON CLUSTER" not in single and "_local" not in single


def test_grants_parse_and_need_a_server(store: Store) -> None:
    grants = plan("auditrail", grants=True)[-1]
    assert grants[0] == "grants"
    for sql in grants[1]:
        store.query("SELECT formatQuery({q:String})", {"q": sql})
    text = "\n".join(grants[1])
    assert "INSERT ON `auditrail`.`otel_logs` TO auditrail_writer" in text
    assert "SELECT ON `auditrail`.`audit_events` TO auditrail_reader" in text
    assert "getSetting('SQL_auditrail_tenant')" in text
    with pytest.raises(StoreError, match="needs a ClickHouse server"):
        apply_grants(store)


# --- the CLI, in processes of their own ------------------------------------------------------------------


def _cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if url:
        env["AUDITRAIL_CLICKHOUSE_URL"] = url
    return subprocess.run([AUDITRAIL, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_migrate_applies_then_reports_up_to_date(tmp_path: Path) -> None:
    url = "chdb://" + str(tmp_path / "store")
    first = _cli("migrate", url=url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_otel_logs" in first.stdout and "applied 0004_retention" in first.stdout
    second = _cli("migrate", url=url)
    assert (second.returncode, second.stdout.strip()) == (0, "schema up to date")


def test_cli_migrate_print_emits_cluster_ddl_without_a_store() -> None:
    out = _cli("migrate", "--cluster", "prod", "--print", "--grants", url="chdb:///nonexistent/not-created")
    assert out.returncode == 0, out.stderr
    assert "-- 0001_otel_logs" in out.stdout and "ON CLUSTER `prod`" in out.stdout and "-- grants" in out.stdout
    assert not Path("/nonexistent/not-created").exists()
    bad = _cli("migrate", "--cluster", "prod; DROP", "--print")
    assert bad.returncode == 2 and "invalid cluster name" in bad.stderr


def test_a_directory_in_use_names_its_owner(store: Store) -> None:
    out = _cli("migrate", url=store.url)
    assert out.returncode == 2
    assert "in use by another process" in out.stderr and "auditrail serve" in out.stderr


def test_store_cli_is_reachable_through_the_main_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "auditrail_store.cli", "migrate", "--print"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "CREATE TABLE IF NOT EXISTS `auditrail`.`audit_events`" in out.stdout
