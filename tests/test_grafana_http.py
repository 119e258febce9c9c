"""Grafana on the embedded store: `auditrail serve --grafana-port` through real ClickHouse clients in HTTP mode.

clickhouse-connect (``http://``) and clickhouse-go (the data source's own client, tests/grafana_go) against a
real service seeded with three tenants' chained events (the clients: tests/grafana_clients.py).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from grafana_clients import Grafana, go_results
from test_store_service import cli, free_port, seeded_service

PER_TENANT = "SELECT tenant_id, toString(count()) FROM audit_events_unique GROUP BY tenant_id ORDER BY tenant_id"


@pytest.fixture(scope="module")
def grafana(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grafana]:
    port = free_port()
    for svc in seeded_service(tmp_path_factory.mktemp("grafana"), "--grafana-port", str(port)):
        yield Grafana(svc, port)


def rows(client, sql: str) -> list[tuple]:
    return [tuple(r) for r in client.query(sql).result_rows]


def test_an_all_tenant_token_sees_every_tenant_as_the_export_api_does(grafana: Grafana) -> None:
    client = grafana.client(grafana.read_all)
    per_tenant = dict(rows(client, PER_TENANT))
    assert set(per_tenant) >= {"acme", "globex", "initech"}
    with grafana.svc.client(grafana.svc.admin) as api:
        for tenant in ("acme", "globex", "initech"):
            exported = api.get(f"/v1/tenants/{tenant}/events", params={"format": "ndjson"}).text.count("\n")
            assert int(per_tenant[tenant]) == exported > 0


def test_a_tenant_token_sees_only_its_tenant_whatever_the_sql(grafana: Grafana) -> None:
    client = grafana.client(grafana.svc.read_acme)
    assert [t for t, _ in rows(client, PER_TENANT)] == ["acme"]
    assert rows(client, "SELECT DISTINCT tenant_id FROM audit_events") == [("acme",)]
    assert rows(client, "SELECT DISTINCT tenant_id FROM (SELECT * FROM auditrail.audit_events WHERE 1 OR 1)") \
        == [("acme",)]
    assert rows(client, "SELECT DISTINCT LogAttributes['audit.tenant_id'] FROM otel_logs") == [("acme",)]
    # The data source's OTel schema 1.2.9 filters on TimestampTime (migration 0025).
    assert rows(client, "SELECT DISTINCT LogAttributes['audit.tenant_id'] FROM otel_logs"
                        " WHERE TimestampTime >= now() - INTERVAL 1 DAY") == [("acme",)]
    assert rows(client, "SELECT count() FROM retention_contracts WHERE tenant_id != 'acme'") == [(0,)]
    assert rows(client, "SELECT DISTINCT tenant_id FROM audit_events_mv") == [("acme",)]
    # Not a tenant's business: token hashes, bookkeeping.
    for table in ("api_tokens", "schema_migrations", "system.processes", "system.mutations"):
        assert rows(client, f"SELECT count() FROM {table}") == [(0,)], table
    # A table's TTL names the tenants that have their own retention contract.
    with pytest.raises(DatabaseError, match="SHOW CREATE is not available"):
        client.query("SHOW CREATE TABLE audit_events")
    assert rows(client, "SELECT count() FROM system.tables WHERE create_table_query LIKE '% TTL %'") == [(0,)]
    assert "audit_events_unique" in [r[0] for r in rows(client, "SHOW TABLES")]
    assert "tenant_id" in [r[0] for r in rows(client, "DESCRIBE TABLE audit_events")]
    # Table functions that read storage past the filters are refused.
    for sql in ("SELECT count() FROM merge(auditrail, '^audit_events$')",
                "SELECT count() FROM mergeTreeIndex('auditrail', 'audit_events')"):
        with pytest.raises(DatabaseError, match="not available"):
            client.query(sql)
    assert rows(client, "SELECT count() FROM view(SELECT * FROM audit_events WHERE tenant_id = 'globex')") == [(0,)]


@pytest.mark.parametrize("sql", [
    "INSERT INTO audit_events (tenant_id, event_type) VALUES ('acme', 'forged')",
    "CREATE TABLE x (a Int8) ENGINE = Memory",
    "DROP TABLE audit_events",
    "ALTER TABLE audit_events DELETE WHERE 1",
    "SELECT count() FROM audit_events SETTINGS readonly = 0",
    "SELECT count() FROM audit_events SETTINGS additional_table_filters = {}",
    "SET readonly = 0",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
])
def test_writes_ddl_and_settings_changes_are_refused_by_the_engine(grafana: Grafana, sql: str) -> None:
    client = grafana.client(grafana.read_all)
    before = rows(client, PER_TENANT)
    with pytest.raises(DatabaseError, match="READONLY|readonly"):
        client.command(sql)
    assert rows(client, PER_TENANT) == before


def test_url_settings_cannot_lift_the_scope_or_the_limits(grafana: Grafana) -> None:
    base = {"database": "auditrail", "query": PER_TENANT}
    auth = ("grafana", grafana.svc.read_acme)
    for extra in ({"readonly": "0"}, {"additional_table_filters": "{}"}, {"result_overflow_mode": "break"}):
        answer = httpx.post(grafana.url, params={**base, **extra}, auth=auth)
        assert answer.status_code == 403 and answer.headers["X-ClickHouse-Exception-Code"] == "164", answer.text
    asked = httpx.post(grafana.url, params={**base, "max_result_rows": "10000000000"}, auth=auth)
    assert asked.status_code == 200 and asked.text.startswith("acme\t")
    # The engine's query cache keys on the settings, filters included: one tenant's cached rows never answer
    # another's identical query.
    for tenant, token in (("acme", grafana.svc.read_acme), ("globex", grafana.svc.read_globex)) * 2:
        cached = httpx.post(grafana.url, params={**base, "use_query_cache": "1"}, auth=("grafana", token))
        assert [line.split("\t")[0] for line in cached.text.splitlines()] == [tenant], cached.text


def test_a_client_may_lower_the_limits_never_raise_them_and_other_settings_are_refused(grafana: Grafana) -> None:
    auth = ("grafana", grafana.svc.read_acme)
    sql = "SELECT getSetting('max_threads'), getSetting('max_memory_usage'), getSetting('max_execution_time')"

    def limits(**params: str) -> list[int]:
        answer = httpx.post(grafana.url, params=params, content=sql, auth=auth)
        assert answer.status_code == 200, answer.text
        return [int(v) for v in answer.text.split()]

    ours = limits()
    assert ours[0] >= 1 and ours[1] > 0 and ours[2] == 30
    assert limits(max_threads="100000", max_memory_usage="1" + "0" * 15, max_execution_time="100000") == ours
    assert limits(max_threads="1", max_memory_usage="1000000", max_execution_time="5") == [1, 1000000, 5]
    assert limits(max_threads="-3", max_execution_time="abc") == ours  # not a positive integer: ours
    # What audit_events_unique's own SETTINGS cannot do under readonly=1 (migration 0035), the session does.
    merged = httpx.post(grafana.url, content="SELECT getSetting('do_not_merge_across_partitions_select_final')",
                        auth=auth)
    assert merged.text == "true\n", merged.text
    # The kept session of the lowered request never answers one that asked nothing (or another tenant's).
    assert limits() == ours
    for name, value in (("dialect", "kusto"), ("max_streams_to_max_threads_ratio", "100"),
                        ("timeout_overflow_mode", "break"), ("read_overflow_mode", "break"),
                        ("allow_introspection_functions", "1")):
        answer = httpx.post(grafana.url, params={name: value}, content="SELECT 1", auth=auth)
        assert answer.status_code == 403 and name in answer.text, answer.text
    # Format settings pass.
    answer = httpx.post(grafana.url, params={"output_format_json_quote_64bit_integers": "0", "default_format": "JSON"},
                        content="SELECT toUInt64(7) AS n", auth=auth)
    assert answer.json()["data"] == [{"n": 7}]


@pytest.mark.parametrize("sql", ["KILL QUERY WHERE 1", "SYSTEM STOP MERGES", "USE system", "SET param_x = 1",
                                 "SET ROLE NONE"])
def test_statements_readonly_lets_run_are_refused_too(grafana: Grafana, sql: str) -> None:
    # readonly=1 runs these (chDB 26.9): one would stop another tenant's query or the store's merges, the
    # others would leave state in a session kept for the next request.
    auth = ("grafana", grafana.svc.read_acme)
    answer = httpx.post(grafana.url, content=sql, auth=auth)
    assert answer.status_code == 403 and "only SELECT" in answer.text, answer.text
    assert httpx.post(grafana.url, content="SELECT currentDatabase()", auth=auth).text == "auditrail\n"


def test_kept_sessions_never_answer_another_tenant_or_other_settings(grafana: Grafana) -> None:
    # Requests of three tokens and two settings, interleaved on one connection each, many times over: every
    # answer is its own token's rows, with its own settings, readonly, whichever kept session served it.
    sql = ("SELECT (SELECT groupArray(DISTINCT tenant_id) FROM (SELECT tenant_id FROM audit_events_unique ORDER BY 1)),"
           " getSetting('max_threads'), getSetting('readonly')")
    expected = {grafana.read_all: None, grafana.svc.read_acme: "['acme']", grafana.svc.read_globex: "['globex']"}
    clients = {token: httpx.Client(base_url=grafana.url, auth=("grafana", token)) for token in expected}
    ours = clients[grafana.read_all].post("/", content="SELECT getSetting('max_threads')").text.strip()
    seen_all = set()
    for round_ in range(12):
        for token, tenants in expected.items():
            threads = {"max_threads": "1"} if round_ % 2 else {}
            answer = clients[token].post("/", params=threads, content=sql + " FORMAT TSVRaw")
            got_tenants, max_threads, readonly = answer.text.rstrip("\n").split("\t")
            seen_all.add(got_tenants) if tenants is None else None
            assert tenants is None or got_tenants == tenants, (token, got_tenants)
            assert readonly == "1" and max_threads == threads.get("max_threads", ours), answer.text
    assert len(seen_all) == 1 and "'acme'" in seen_all.pop()
    # A statement's verdict is kept per token kind: SHOW CREATE passed for an all-tenant token stays refused
    # to a one-tenant token.
    show = "SHOW CREATE TABLE audit_events"
    assert clients[grafana.read_all].post("/", content=show).status_code == 200
    refused = clients[grafana.svc.read_acme].post("/", content=show)
    assert refused.status_code == 403 and "SHOW CREATE is not available" in refused.text
    for client in clients.values():
        client.close()


def test_row_limit_and_timeout_stop_the_query(grafana: Grafana) -> None:
    # As the data source sends its query timeout: a URL setting (capped at the interface's own limits).
    auth = ("grafana", grafana.read_all)
    answer = httpx.post(grafana.url, params={"max_result_rows": "5"}, content="SELECT number FROM numbers(100)",
                        auth=auth)
    assert "TOO_MANY_ROWS" in answer.text or "Limit for result" in answer.text, answer.text
    answer = httpx.post(grafana.url, params={"max_execution_time": "1"}, auth=auth, timeout=60,
                        content="SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 1")
    assert answer.status_code == 504 and "TIMEOUT_EXCEEDED" in answer.text, answer.text


def test_only_read_tokens_get_in(grafana: Grafana) -> None:
    for auth in (None, ("grafana", "wrong"), ("grafana", grafana.svc.ingest), ("grafana", grafana.svc.ingest_acme)):
        answer = httpx.post(grafana.url, params={"query": "SELECT 1"}, auth=auth)
        assert answer.status_code == 401 and answer.headers["X-ClickHouse-Exception-Code"] == "516", auth
    for headers in ({"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": grafana.svc.read_acme},
                    {"Authorization": f"Bearer {grafana.svc.admin}"}):
        answer = httpx.post(grafana.url, params={"query": "SELECT 1"}, headers=headers)
        assert answer.status_code == 200 and answer.text == "1\n"
    assert httpx.get(grafana.url + "/ping").text == "Ok.\n"


def test_sql_in_a_chunked_or_gzipped_body(grafana: Grafana) -> None:
    auth = ("grafana", grafana.svc.read_acme)
    sql = b"SELECT DISTINCT tenant_id FROM audit_events"
    chunked = httpx.post(grafana.url, content=iter([sql[:10], sql[10:]]), auth=auth)
    zipped = httpx.post(grafana.url, content=gzip.compress(sql), headers={"Content-Encoding": "gzip"}, auth=auth)
    assert chunked.text == zipped.text == "acme\n"
    too_long = httpx.post(grafana.url, content=gzip.compress(b"SELECT 1" + b" " * (2 << 20)), auth=auth,
                          headers={"Content-Encoding": "gzip"})
    assert too_long.status_code == 500 and "longer than" in too_long.text


def test_result_formats_the_data_source_asks_for(grafana: Grafana) -> None:
    auth = ("grafana", grafana.svc.read_acme)
    sql = "SELECT tenant_id AS t, count() AS n FROM auditrail.audit_events_unique GROUP BY t"
    as_json = httpx.post(grafana.url, params={"default_format": "JSON"}, content=sql, auth=auth).json()
    assert as_json["meta"] == [{"name": "t", "type": "String"}, {"name": "n", "type": "UInt64"}]
    assert as_json["data"][0]["t"] == "acme"
    each = httpx.post(grafana.url, content=sql + " FORMAT JSONEachRow", auth=auth).text.splitlines()
    assert [json.loads(line)["t"] for line in each] == ["acme"]


def test_a_server_store_is_pointed_at_directly_not_through_serve() -> None:
    done = cli("serve", "--grafana-port", str(free_port()), "--url", "http://127.0.0.1:9/", env=dict(os.environ),
               check=False)
    assert done.returncode == 2 and "point Grafana's ClickHouse data source at the ClickHouse server" in done.stderr


def test_the_data_source_client_clickhouse_go_reads_the_same_rows(grafana: Grafana, tmp_path: Path) -> None:
    typed = ("SELECT event_type, actor, toString(count()) AS n, max(timestamp) > now() - INTERVAL 1 DAY AS recent"
             " FROM audit_events_unique GROUP BY event_type, actor ORDER BY event_type, actor")
    queries = [PER_TENANT, typed, "INSERT INTO audit_events (tenant_id) VALUES ('x')",
               "SELECT 1 SETTINGS readonly = 0", "SELECT count() FROM merge(auditrail, '^otel_logs$')"]
    for token in (grafana.read_all, grafana.svc.read_acme):
        through_go = go_results(grafana.url, token, queries, tmp_path)
        client = grafana.client(token)
        for result, sql in zip(through_go[:2], queries[:2], strict=True):
            assert not result["error"], result
            expected = [[str(v).lower() if isinstance(v, bool) else str(v) for v in row] for row in rows(client, sql)]
            assert result["rows"] == expected and expected, sql
        for result in through_go[2:]:
            assert "164" in result["error"] or "READONLY" in result["error"], result
    assert [r[0] for r in go_results(grafana.url, grafana.svc.read_acme, [PER_TENANT], tmp_path)[0]["rows"]] \
        == ["acme"]
