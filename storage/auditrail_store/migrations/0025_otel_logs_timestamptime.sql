-- Grafana's ClickHouse data source reads otel_logs in one of two OTel schema versions: 1.3.0 ("auto", every
-- data source created from plugin v4.20 on) works on the exporter's table as it is; 1.2.9 (older data
-- sources keep it) filters and orders on a `TimestampTime` column the exporter's v0.161.0 table lacks.
-- An ALIAS column serves 1.2.9 at no storage cost and no insert cost: it is computed at read time, and it is
-- outside every INSERT's default column list. The exporter (logs_insert.sql names its 15 columns + EventName),
-- ingest.py and ingest_fast.py all name their columns, so their inserts are unchanged
-- (tests/test_storage_schema.py inserts as the exporter does, tests/test_grafana_http.py reads as 1.2.9 does).
ALTER TABLE ${db}.`otel_logs${local}` ${on_cluster} ADD COLUMN IF NOT EXISTS `TimestampTime` DateTime ALIAS toDateTime(Timestamp);

-- @cluster-only
ALTER TABLE ${db}.`otel_logs` ${on_cluster} ADD COLUMN IF NOT EXISTS `TimestampTime` DateTime ALIAS toDateTime(Timestamp);
