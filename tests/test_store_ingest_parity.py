"""Parity: the store's OTLP ingest writes the otel_logs rows the real collector's clickhouse exporter writes.

The same randomized OTLP requests go (a) to the real collector (bin/otelcol-auditrail: otlp receiver ->
clickhouse exporter, nothing between) which inserts into auditrail.otel_logs of a ClickHouse-HTTP front
over chDB (tests/clickhouse_http.py, a test fixture), and (b) through auditrail_store.ingest into a twin
table of the same engine. Every column of every row must be equal, maps compared as ordered pairs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from clickhouse_http import ClickHouseHTTPFixture
from collector import Collector, exporter_only_config, require_binary, wait_until
from test_store_ingest import _random_request

CONFIG = exporter_only_config("enabled: false")

COLUMNS = ("toUnixTimestamp64Nano(Timestamp) AS ts, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, "
           "ServiceName, Body, ResourceSchemaUrl, mapKeys(ResourceAttributes) AS rk, "
           "mapValues(ResourceAttributes) AS rv, ScopeSchemaUrl, ScopeName, ScopeVersion, "
           "mapKeys(ScopeAttributes) AS sk, mapValues(ScopeAttributes) AS sv, mapKeys(LogAttributes) AS lk, "
           "mapValues(LogAttributes) AS lv, EventName")


def _recent(request: ExportLogsServiceRequest, base: int) -> ExportLogsServiceRequest:
    """Times within the last minute (older rows would meet the retention TTL), zeros kept as zeros."""
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for i, record in enumerate(scope_logs.log_records):
                record.time_unix_nano = 0 if record.time_unix_nano % 5 == 0 else base + i * 1000 + 1
                record.observed_time_unix_nano = base + i * 1000 + 7
    return request


def test_ingest_rows_equal_the_collector_exporters_rows(tmp_path: Path) -> None:
    require_binary()
    from auditrail_store.db import Store
    from auditrail_store.ingest import LogWriter, decode_protobuf
    from auditrail_store.migrate import migrate

    with ClickHouseHTTPFixture(tmp_path / "clickhouse") as clickhouse:
        with Store.open(clickhouse.url) as store:
            migrate(store)
            store.command("CREATE TABLE auditrail.otel_logs_ours AS auditrail.otel_logs")
            config = tmp_path / "parity.yaml"
            config.write_text(CONFIG)
            collector = Collector(tmp_path / "collector", {"EXPORTER_CLICKHOUSE_ENDPOINT": clickhouse.url}, [config])
            rng = random.Random(161)
            requests = [_recent(_random_request(rng), time.time_ns() - 60 * 10**9 + n * 10**7) for n in range(40)]
            expected = 0
            with collector:
                writer = LogWriter(store.client, store.database, table="otel_logs_ours")
                for request in requests:
                    assert collector.send(request, token=None) == 200, collector.log_tail()
                    expected += writer.write(decode_protobuf(request.SerializeToString()))
                wait_until(lambda: int(clickhouse.execute("SELECT count() FROM auditrail.otel_logs")) >= expected,
                           timeout=60, what=f"{expected} rows from the collector")
            # The exporter inserted into otel_logs with migration 0025's ALIAS column (Grafana's OTel 1.2.9).
            assert clickhouse.execute("SELECT countIf(TimestampTime = toDateTime(Timestamp)) = count()"
                                      " FROM auditrail.otel_logs") == "1\n"
            order = " ORDER BY ts, Body, lk, lv, rk, rv, sk, sv, TraceId, SpanId, SeverityNumber, TraceFlags"
            theirs = clickhouse.rows(f"SELECT {COLUMNS} FROM auditrail.otel_logs{order}")
            ours = clickhouse.rows(f"SELECT {COLUMNS} FROM auditrail.otel_logs_ours{order}")
    assert expected > 100 and len(theirs) == expected
    for their_row, our_row in zip(theirs, ours, strict=True):
        assert our_row == their_row
    assert _service_path_rows(tmp_path, requests, order) == theirs
    if not any(row["lk"] != sorted(set(row["lk"])) for row in theirs):
        pytest.fail("the random requests should include a record with repeated or unsorted attribute keys")


def _service_path_rows(tmp_path: Path, requests: list[ExportLogsServiceRequest], order: str) -> list[dict]:
    """The same requests as the service writes them on an embedded store: ingest_fast (the engine decodes),
    and the existing path for what it declines; the rows as JSONEachRow, as the fixture returns them."""
    import json

    from auditrail_store.db import Store
    from auditrail_store.ingest import LogWriter, decode_protobuf
    from auditrail_store.ingest_fast import FastLogWriter
    from auditrail_store.migrate import migrate

    with Store.open(f"chdb://{tmp_path}/service-path") as store:
        migrate(store)
        writer = LogWriter(store.client, store.database)
        fast = FastLogWriter.for_store(store, writer.columns, min_rows=1)  # every request
        assert fast is not None
        taken = 0
        try:
            for request in requests:
                data = request.SerializeToString()
                if fast.write(data) is None:
                    writer.write(decode_protobuf(data))
                else:
                    taken += 1
        finally:
            fast.close()
        assert taken > 0, "some requests have only values the engine path converts itself"
        text = store.client.raw_query(f"SELECT {COLUMNS} FROM auditrail.otel_logs{order}", fmt="JSONEachRow")
    return [json.loads(line) for line in text.decode().splitlines() if line]
