-- otel_logs exactly as the OpenTelemetry Collector contrib clickhouse exporter creates it.
--
-- Source:  github.com/open-telemetry/opentelemetry-collector-contrib
--          exporter/clickhouseexporter/internal/sqltemplates/logs_table.sql
--          tag v0.161.0, read from the Go module exporter/clickhouseexporter@v0.161.0 (the module the
--          collector build pins; published 2026-09-15T10:33:45Z, go.sum h1:DotOYKRvaGr75U0rIIKpcVSMfM+fYMZLaXutHzSOZKA=).
--          Template file sha256 6312d33a6179b0c07f8238957cb6549fd96da9ac0512f284e4d77faceada6e4f (4224 bytes).
--          Commit: not recorded; the module proxy does not carry it and the 1.3 GB repository could not be
--          fetched here. `git rev-list -n1 v0.161.0` in a contrib clone gives it.
-- Rendered as exporter_logs.go renderCreateLogsTableSQL does with the exporter's defaults:
--   Database = auditrail, TableName = otel_logs, ClusterString = "" (cluster_name unset),
--   Engine = "MergeTree()" (table_engine unset), TTL = "" (ttl: 0, the default),
--   HasFullTextSearch = false: the template's bloom_filter/tokenbf_v1 branch, which the exporter renders for
--   servers before 26.2. On 26.9 it would pick the text() indexes, but those cut insert speed to a third
--   (chDB 26.9, 100k rows x 5 interleaved, medians: 24k rows/s with text indexes, 78k with bloom filters,
--   79k with none) and audit
--   reads go to audit_events, not full-text search over Body. Skip indexes change no column, type, codec
--   or key, so the exporter's inserts are unaffected (docs/storage.md).
-- Our only substitutions, so one file serves a single node and a cluster (migrate.py fills them):
--   ${db} = `auditrail`, ${local} = "" (cluster: "_local"), ${on_cluster} = "" (cluster: ON CLUSTER `name`),
--   ${replicated} = "" (cluster: "Replicated").
-- The collector runs with create_schema: false against this table. Keep columns, types, codecs and ORDER BY
-- byte-equal to upstream; tests/test_storage_schema.py compares DESCRIBE TABLE with this text.
CREATE TABLE IF NOT EXISTS ${db}.`otel_logs${local}` ${on_cluster} (
    `Timestamp` DateTime64(9) COMMENT 'Event timestamp with nanosecond precision' CODEC(Delta(8), ZSTD(1)),
    `TraceId` String COMMENT 'W3C trace identifier' CODEC(ZSTD(1)),
    `SpanId` String COMMENT 'W3C span identifier' CODEC(ZSTD(1)),
    `TraceFlags` UInt8 COMMENT 'W3C trace flags',
    `SeverityText` LowCardinality(String) COMMENT 'Log severity as text' CODEC(ZSTD(1)),
    `SeverityNumber` UInt8 COMMENT 'Log severity as number (1-24)',
    `ServiceName` LowCardinality(String) COMMENT 'Service that emitted the log' CODEC(ZSTD(1)),
    `Body` String COMMENT 'Log message body' CODEC(ZSTD(1)),
    `ResourceSchemaUrl` LowCardinality(String) COMMENT 'Schema URL for the resource' CODEC(ZSTD(1)),
    `ResourceAttributes` Map(LowCardinality(String), String) COMMENT 'Resource attributes as key-value pairs' CODEC(ZSTD(1)),
    `ScopeSchemaUrl` LowCardinality(String) COMMENT 'Schema URL for the instrumentation scope' CODEC(ZSTD(1)),
    `ScopeName` String COMMENT 'Instrumentation scope name' CODEC(ZSTD(1)),
    `ScopeVersion` LowCardinality(String) COMMENT 'Instrumentation scope version' CODEC(ZSTD(1)),
    `ScopeAttributes` Map(LowCardinality(String), String) COMMENT 'Instrumentation scope attributes' CODEC(ZSTD(1)),
    `LogAttributes` Map(LowCardinality(String), String) COMMENT 'Log record attributes' CODEC(ZSTD(1)),
    `EventName` String COMMENT 'Event name for log records representing events' CODEC(ZSTD(1)),
    `__otel_materialized_k8s.cluster.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.cluster.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.container.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.container.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.deployment.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.deployment.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.namespace.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.namespace.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.node.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.node.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.pod.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.pod.name'] CODEC(ZSTD(1)),
    `__otel_materialized_k8s.pod.uid` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.pod.uid'] CODEC(ZSTD(1)),
    `__otel_materialized_deployment.environment.name` LowCardinality(String) MATERIALIZED ResourceAttributes['deployment.environment.name'] CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = ${replicated}MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)

SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- @cluster-only
-- Cluster: the collector writes to the Distributed table (its DESC TABLE sees the same columns). Rows of one
-- audit event id go to one shard, so a replayed event meets its first copy there and FINAL collapses it.
CREATE TABLE IF NOT EXISTS ${db}.`otel_logs` ${on_cluster} AS ${db}.`otel_logs_local`
ENGINE = Distributed(${cluster}, ${db}, `otel_logs_local`,
    if(mapContains(LogAttributes, 'audit.event_id'), cityHash64(LogAttributes['audit.event_id']), rand()));
